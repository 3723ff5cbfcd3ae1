//! The IPv6-only rule, in one place.

use std::net::{IpAddr, SocketAddr};

use crate::TransportError;

/// Accepts an IPv6 socket address and refuses IPv4 and IPv4-mapped IPv6 (`::ffff:a.b.c.d`),
/// because STOQ is IPv6-only: every address in config, on the command line and in `connect`
/// goes through here.
pub fn ensure_ipv6(addr: SocketAddr) -> Result<SocketAddr, TransportError> {
    match addr.ip() {
        IpAddr::V6(ip) if ip.to_ipv4_mapped().is_none() => Ok(addr),
        _ => Err(TransportError::Ipv4Refused {
            addr: addr.to_string(),
        }),
    }
}

/// Parses text such as `[::1]:4433` into an IPv6 socket address, with the same refusal of IPv4.
pub fn parse_ipv6(text: &str) -> Result<SocketAddr, TransportError> {
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| TransportError::BadAddress {
            addr: text.to_owned(),
        })?;
    ensure_ipv6(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_accepted() {
        assert!(parse_ipv6("[::1]:4433").is_ok());
        assert!(parse_ipv6("[2001:db8::7]:0").is_ok());
    }

    #[test]
    fn ipv4_and_mapped_ipv4_are_refused_with_a_clear_message() {
        for text in ["127.0.0.1:4433", "[::ffff:127.0.0.1]:4433", "0.0.0.0:0"] {
            let err = parse_ipv6(text).unwrap_err();
            assert!(matches!(err, TransportError::Ipv4Refused { .. }), "{text}");
            assert!(err.to_string().contains("IPv6-only"), "{err}");
        }
    }

    #[test]
    fn garbage_is_a_bad_address() {
        assert!(matches!(
            parse_ipv6("localhost:80"),
            Err(TransportError::BadAddress { .. })
        ));
    }
}
