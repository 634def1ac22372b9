//! Entry tickets, from the `sealroom-ticket` crate (which an app backend links alone to mint
//! them): the relay verifies them with [`TicketVerifier`] before it admits anyone.

pub use sealroom_ticket::{
    AppConfig, Grants, MAX_TICKET_LEN, TicketClaims, TicketError, TicketSecret, TicketVerifier,
    VerifyError, mint,
};
