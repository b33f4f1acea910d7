//! One connection to a bus (a TCP socket or a serial port) and one request on it.
//!
//! tokio-modbus has no timeout of its own and keeps whatever it has half read when
//! a call is abandoned, so every call here is bounded by a timeout and any failure
//! other than a Modbus exception throws the connection away: the next request
//! reopens it and starts from a clean line.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};
use tokio_serial::SerialPort;

use super::config::{Parity, SerialLine, Transport};

/// What a request came to, short of a response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// The device answered with an exception: its own problem, not the bus's.
    Exception(u8),
    /// No answer within the timeout (the connection has been dropped); `stray`
    /// bytes came that made no frame (a bad CRC, noise, another master).
    Timeout { stray: usize },
    /// The bus failed: the connection could not be made or was lost, or the answer
    /// was malformed. The words say which, naming the peer.
    Link(String),
}

/// Where a bus is: one task serves every device behind it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum BusKey {
    Tcp(String, u16),
    Rtu(String),
}

impl BusKey {
    pub(crate) fn of(t: &Transport) -> Self {
        match t {
            Transport::Tcp { host, port } => BusKey::Tcp(host.clone(), *port),
            Transport::Rtu(line) => BusKey::Rtu(line.tty.clone()),
        }
    }
}

impl std::fmt::Display for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusKey::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            BusKey::Tcp(host, port) => write!(f, "{host}:{port}"),
            BusKey::Rtu(tty) => f.write_str(tty),
        }
    }
}

pub(crate) struct Link {
    pub(crate) transport: Transport,
    ctx: Option<Context>,
    /// Bytes read since the current request was sent.
    received: Arc<AtomicUsize>,
}

/// A transport that counts what it reads: tokio-modbus skips bytes that make no
/// valid frame (a bad CRC) and says nothing, so without the count a corrupted answer
/// would look like silence.
#[derive(Debug)]
struct Counted<T> {
    inner: T,
    received: Arc<AtomicUsize>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.received.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Link {
    pub(crate) fn new(transport: Transport) -> Self {
        Link {
            transport,
            ctx: None,
            received: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.ctx.is_some()
    }

    pub(crate) fn close(&mut self) {
        // Dropping the context closes the socket or port; a polite disconnect
        // could block on a dead peer.
        self.ctx = None;
    }

    fn name(&self) -> String {
        BusKey::of(&self.transport).to_string()
    }

    /// Opens the connection if it is not open.
    pub(crate) async fn open(&mut self, timeout: Duration) -> Result<(), String> {
        if self.ctx.is_some() {
            return Ok(());
        }
        let ctx = match &self.transport {
            Transport::Tcp { host, port } => {
                let name = self.name();
                let stream = match tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                {
                    Err(_) => {
                        return Err(format!(
                            "no connection to {name} within {} ms",
                            timeout.as_millis()
                        ))
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        return Err(format!("connection refused by {name}"))
                    }
                    Ok(Err(e)) => return Err(format!("cannot connect to {name}: {e}")),
                    Ok(Ok(s)) => s,
                };
                // Requests are small and each waits for its answer.
                let _ = stream.set_nodelay(true);
                let received = Arc::clone(&self.received);
                tokio_modbus::client::tcp::attach_slave(
                    Counted {
                        inner: stream,
                        received,
                    },
                    Slave(0),
                )
            }
            Transport::Rtu(line) => {
                let port = open_serial(line).map_err(|e| format!("cannot open {line}: {e}"))?;
                let received = Arc::clone(&self.received);
                tokio_modbus::client::rtu::attach_slave(
                    Counted {
                        inner: port,
                        received,
                    },
                    Slave(0),
                )
            }
        };
        self.ctx = Some(ctx);
        Ok(())
    }

    /// One request to `unit`, bounded by `timeout`; the connection must be open.
    pub(crate) async fn call(
        &mut self,
        unit: u8,
        request: Request<'_>,
        timeout: Duration,
    ) -> Result<Response, Failure> {
        let name = self.name();
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(Failure::Link(format!("no connection to {name}")));
        };
        ctx.set_slave(Slave(unit));
        self.received.store(0, Ordering::Relaxed);
        let result = tokio::time::timeout(timeout, ctx.call(request)).await;
        match result {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(Failure::Exception(exception_number(code))),
            Err(_) => {
                // A late answer would be taken for the next request's.
                self.close();
                Err(Failure::Timeout {
                    stray: self.received.load(Ordering::Relaxed),
                })
            }
            Ok(Err(e)) => {
                self.close();
                Err(Failure::Link(link_error(&self.transport, &name, e)))
            }
        }
    }
}

fn link_error(t: &Transport, name: &str, e: tokio_modbus::Error) -> String {
    match (t, e) {
        (_, tokio_modbus::Error::Protocol(p)) => format!("malformed answer on {name}: {p}"),
        (Transport::Rtu(_), tokio_modbus::Error::Transport(e))
            if e.kind() == io::ErrorKind::InvalidData =>
        {
            format!("malformed frame on {name}: {e}")
        }
        // tokio-modbus reports a connection the peer closed as NotFound ("No such file
        // or directory"), which would send an operator looking for a file.
        (Transport::Tcp { .. }, tokio_modbus::Error::Transport(e))
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            ) =>
        {
            format!("connection to {name} closed by the device")
        }
        (Transport::Tcp { .. }, tokio_modbus::Error::Transport(e)) => {
            format!("connection to {name} lost: {e}")
        }
        (Transport::Rtu(_), tokio_modbus::Error::Transport(e)) => format!("{name}: {e}"),
    }
}

fn open_serial(line: &SerialLine) -> tokio_serial::Result<tokio_serial::SerialStream> {
    use tokio_serial::{DataBits, SerialPortBuilderExt, StopBits};
    let port = tokio_serial::new(&line.tty, line.baud)
        .parity(match line.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .data_bits(if line.data_bits == 7 {
            DataBits::Seven
        } else {
            DataBits::Eight
        })
        .stop_bits(if line.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        })
        .open_native_async()?;
    // Whatever a device sent after the last request we gave up on would be read
    // as the answer to the next one.
    let _ = port.clear(tokio_serial::ClearBuffer::All);
    Ok(port)
}

pub(crate) fn exception_number(code: ExceptionCode) -> u8 {
    u8::from(code)
}

/// The exception's name from the Modbus application protocol spec.
pub(crate) fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}
