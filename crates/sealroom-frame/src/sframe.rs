//! The SFrame header of RFC 9605 section 4.3.
