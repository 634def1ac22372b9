//! Framing of messages laid back to back on one QUIC stream.
