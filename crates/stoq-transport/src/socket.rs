//! The UDP socket under an endpoint: IPv6 only, with the configured buffer sizes.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::{addr::ensure_ipv6, TransportConfig, TransportError};

/// Binds an IPv6 UDP socket with IPV6_V6ONLY set, so it can never carry IPv4, and applies the
/// configured send and receive buffer sizes. With `reuse_port`, SO_REUSEPORT is set so that
/// several sockets of this process (the kernel allows only the same user) share the port.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    config: &TransportConfig,
    reuse_port: bool,
) -> Result<std::net::UdpSocket, TransportError> {
    let addr = ensure_ipv6(addr)?;
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
        .map_err(TransportError::Socket)?;
    socket.set_only_v6(true).map_err(TransportError::Socket)?;
    if reuse_port {
        socket
            .set_reuse_port(true)
            .map_err(TransportError::Socket)?;
    }
    if let Some(size) = config.socket_send_buffer {
        socket
            .set_send_buffer_size(size)
            .map_err(TransportError::Socket)?;
    }
    if let Some(size) = config.socket_recv_buffer {
        socket
            .set_recv_buffer_size(size)
            .map_err(TransportError::Socket)?;
    }
    socket.bind(&addr.into()).map_err(TransportError::Socket)?;
    Ok(socket.into())
}

/// Binds an IPv6-only UDP socket at `addr` with the default buffer sizes, for another QUIC
/// stack of the same process (the HTTP front's HTTP/3).
pub fn bind_udp_v6(addr: SocketAddr) -> Result<std::net::UdpSocket, TransportError> {
    bind_udp(addr, &TransportConfig::default(), false)
}

/// Binds `count` sockets sharing one port (SO_REUSEPORT). The port is first taken by a socket
/// without SO_REUSEPORT, which the kernel gives only a port no socket holds (for port 0) and
/// refuses where any socket holds it (an explicit port): left to itself, the kernel may put a
/// SO_REUSEPORT socket asking for port 0 on a port another such group of the same user already
/// holds, and the two would then share each other's packets. The probe is released just
/// before the group binds.
pub(crate) fn bind_udp_group(
    addr: SocketAddr,
    config: &TransportConfig,
    count: usize,
) -> Result<Vec<std::net::UdpSocket>, TransportError> {
    let port = {
        let probe = bind_udp(addr, config, false)?;
        probe.local_addr().map_err(TransportError::Socket)?
    };
    (0..count.max(1))
        .map(|_| bind_udp(port, config, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_on_port_zero_never_share_a_port_and_a_held_port_is_refused() {
        let config = TransportConfig::default();
        let groups: Vec<_> = (0..200)
            .map(|_| bind_udp_group("[::1]:0".parse().unwrap(), &config, 2).unwrap())
            .collect();
        let mut ports: Vec<u16> = groups
            .iter()
            .map(|g| g[0].local_addr().unwrap().port())
            .collect();
        for g in &groups {
            assert_eq!(g[0].local_addr().unwrap(), g[1].local_addr().unwrap());
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), groups.len(), "two groups were given one port");
        let taken = groups[0][0].local_addr().unwrap();
        assert!(bind_udp_group(taken, &config, 2).is_err());
    }

    #[test]
    fn socket_is_v6_only_and_takes_buffer_sizes() {
        let config = TransportConfig {
            socket_recv_buffer: Some(64 * 1024),
            ..TransportConfig::default()
        };
        let socket = bind_udp("[::1]:0".parse().unwrap(), &config, false).unwrap();
        let socket = Socket::from(socket);
        assert!(socket.only_v6().unwrap());
        // Linux doubles the asked size for bookkeeping; its default (rmem_default, 208 KiB on
        // stock kernels) is larger, so this only holds if our setting was applied.
        let got = socket.recv_buffer_size().unwrap();
        assert!((64 * 1024..=128 * 1024).contains(&got), "recv buffer {got}");
    }

    #[test]
    fn reuse_port_sockets_share_one_port() {
        let config = TransportConfig::default();
        let first = bind_udp("[::1]:0".parse().unwrap(), &config, true).unwrap();
        let port = first.local_addr().unwrap();
        let second = bind_udp(port, &config, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), port);
        assert!(
            bind_udp(port, &config, false).is_err(),
            "others cannot join"
        );
    }

    #[test]
    fn ipv4_bind_is_refused() {
        let err = bind_udp(
            "127.0.0.1:0".parse().unwrap(),
            &TransportConfig::default(),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("IPv6-only"));
    }
}
