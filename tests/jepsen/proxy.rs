//! A TCP proxy between each pair of members, owned by the test, so that
//! partitions need no root: member `a` (the lower id, which dials) is told
//! that member `b` lives at the proxy's port; the proxy connects on to `b`.
//! Each direction of the pair's one connection can be passed, blackholed
//! (bytes accepted and held, as a dead link does), delayed, or the whole
//! link cut (connections reset, new ones refused).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a direction of a link does with bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward them.
    Pass = 0,
    /// Hold them (the sender's writes stall once buffers fill).
    Blackhole = 1,
    /// Cut: connections are reset and new ones refused.
    Cut = 2,
}

/// The shared state of one direction.
#[derive(Debug, Default)]
struct Direction {
    /// A [`Mode`] as u8.
    mode: AtomicU8,
    /// Milliseconds to hold each chunk before forwarding it.
    delay_ms: AtomicU64,
}

/// One member pair's proxy.
#[derive(Debug)]
pub struct Link {
    /// Where the dialing member connects.
    pub listen: SocketAddr,
    /// Bytes from the dialer to the other member.
    up: Arc<Direction>,
    /// Bytes back.
    down: Arc<Direction>,
    /// Set when the test ends.
    stop: Arc<AtomicBool>,
    /// The accept thread, joined on drop so that the port is free again.
    acceptor: Option<std::thread::JoinHandle<()>>,
}

/// Poll interval of the pump threads (how quickly a mode change bites).
const POLL: Duration = Duration::from_millis(20);
/// Bytes moved per read; at most this much is held per direction.
const CHUNK_BYTES: usize = 64 * 1024;

impl Link {
    /// A proxy on `listen` forwarding to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Link {
        let listener = TcpListener::bind(listen).expect("proxy port");
        listener.set_nonblocking(true).expect("nonblocking");
        let mut link = Link {
            listen,
            up: Arc::default(),
            down: Arc::default(),
            stop: Arc::default(),
            acceptor: None,
        };
        let (up, down, stop) = (link.up.clone(), link.down.clone(), link.stop.clone());
        link.acceptor =
            Some(std::thread::spawn(move || accept_loop(&listener, target, &up, &down, &stop)));
        link
    }

    /// Sets both directions (`up`: dialer to dialed).
    pub fn set(&self, up: Mode, down: Mode) {
        self.up.mode.store(up as u8, Ordering::SeqCst);
        self.down.mode.store(down as u8, Ordering::SeqCst);
    }

    /// Delays every chunk in both directions.
    pub fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.up.delay_ms.store(ms, Ordering::SeqCst);
        self.down.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Back to passing everything at once.
    pub fn heal(&self) {
        self.set(Mode::Pass, Mode::Pass);
        self.delay(Duration::ZERO);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn mode(direction: &Direction) -> u8 {
    direction.mode.load(Ordering::SeqCst)
}

fn accept_loop(
    listener: &TcpListener,
    target: SocketAddr,
    up: &Arc<Direction>,
    down: &Arc<Direction>,
    stop: &Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => continue,
        };
        let cut = mode(up) == Mode::Cut as u8 || mode(down) == Mode::Cut as u8;
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            continue;
        };
        if cut {
            continue; // both dropped: the dialer sees the connection close
        }
        let _ = client.set_nonblocking(false);
        for (from, to, direction) in [
            (client.try_clone(), server.try_clone(), up.clone()),
            (server.try_clone(), client.try_clone(), down.clone()),
        ] {
            let (Ok(from), Ok(to)) = (from, to) else { continue };
            let stop = stop.clone();
            std::thread::spawn(move || pump(from, to, &direction, &stop));
        }
    }
}

/// Moves bytes one way until either side closes or the link is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, direction: &Direction, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let close = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    loop {
        if stop.load(Ordering::SeqCst) || mode(direction) == Mode::Cut as u8 {
            return close(&from, &to);
        }
        if mode(direction) == Mode::Blackhole as u8 {
            std::thread::sleep(POLL);
            continue;
        }
        let read = match from.read(&mut buffer) {
            Ok(0) => return close(&from, &to),
            Ok(read) => read,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return close(&from, &to),
        };
        // Hold the chunk while blackholed or delayed; a cut drops it.
        let delay = direction.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        while mode(direction) == Mode::Blackhole as u8 && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
        }
        if mode(direction) == Mode::Cut as u8 || to.write_all(&buffer[..read]).is_err() {
            return close(&from, &to);
        }
    }
}
