//! The in-memory "socket" under OpenSSL: each `write` from OpenSSL is one datagram
//! to send, each `read` hands over one whole received datagram (or WouldBlock), so
//! datagram boundaries survive the stream-shaped BIO rust-openssl gives us.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

#[derive(Default)]
pub struct Wire {
    pub incoming: VecDeque<Vec<u8>>,
    pub outgoing: VecDeque<Vec<u8>>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // OpenSSL's DTLS read buffer holds a maximum record; what does not fit is
        // lost, as a too-small recv buffer loses it on a UDP socket.
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_datagram_boundaries() {
        let mut w = Wire::default();
        w.incoming.push_back(vec![1, 2, 3]);
        w.incoming.push_back(vec![4]);
        let mut buf = [0u8; 2];
        assert_eq!(w.read(&mut buf).unwrap(), 2);
        let mut buf = [0u8; 8];
        assert_eq!(w.read(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 4);
        assert_eq!(
            w.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        assert_eq!(w.outgoing, [b"ab".to_vec(), b"c".to_vec()]);
    }
}
