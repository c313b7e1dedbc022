//! A DNS forwarder on loopback between the module's resolver and knotd (which keeps no
//! query log): it records the name and type of every query it relays, over UDP and TCP,
//! and can hold back the queries for chosen names (a slow path to the authoritative
//! server), so a test can see what the sync looked up and when its answer arrives.
//!
//! Answers are relayed unchanged (DNSSEC validation still runs in the module against
//! knotd's signatures). Every wait is bounded; the listeners stop on drop, relaying
//! threads end with their connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One relayed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Lower case, without the trailing dot ("" for the root).
    pub name: String,
    /// Numeric type (52 = TLSA).
    pub rtype: u16,
    pub at: Instant,
}

pub const TLSA: u16 = 52;

#[derive(Default)]
struct State {
    stop: AtomicBool,
    queries: Mutex<Vec<Query>>,
    /// Query names (lower case, no trailing dot) whose queries wait this long first.
    delays: Mutex<Vec<(String, Duration)>>,
}

impl State {
    /// Records the question of `msg` and returns how long to hold it.
    fn note(&self, msg: &[u8]) -> Duration {
        let Some((name, rtype)) = question(msg) else { return Duration::ZERO };
        let delay = self.delays.lock().unwrap().iter().find(|(n, _)| *n == name).map_or(Duration::ZERO, |(_, d)| *d);
        self.queries.lock().unwrap().push(Query { name, rtype, at: Instant::now() });
        delay
    }
}

/// The forwarder: point the resolver at [`DnsProxy::addr`] (UDP and TCP, one port).
pub struct DnsProxy {
    addr: SocketAddr,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsProxy {
    /// Relays 127.0.0.1:<free port> to `upstream` (UDP to UDP, TCP to TCP).
    pub fn start(upstream: SocketAddr) -> DnsProxy {
        let (udp, tcp) = (0..20)
            .find_map(|_| {
                let port = super::dns::free_port();
                let udp = UdpSocket::bind(("127.0.0.1", port)).ok()?;
                let tcp = TcpListener::bind(("127.0.0.1", port)).ok()?;
                Some((udp, tcp))
            })
            .expect("a free port for the DNS proxy");
        let addr = udp.local_addr().expect("proxy addr");
        udp.set_read_timeout(Some(Duration::from_millis(50))).expect("udp timeout");
        tcp.set_nonblocking(true).expect("nonblocking listener");
        let state = Arc::new(State::default());
        let s = state.clone();
        let udp_thread = std::thread::spawn(move || relay_udp(&udp, upstream, &s));
        let s = state.clone();
        let tcp_thread = std::thread::spawn(move || accept_tcp(&tcp, upstream, &s));
        DnsProxy { addr, state, threads: vec![udp_thread, tcp_thread] }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query relayed so far, in order.
    pub fn queries(&self) -> Vec<Query> {
        self.state.queries.lock().unwrap().clone()
    }

    /// Queries whose name is `suffix` or ends with `.suffix` (case-blind).
    pub fn queries_under(&self, suffix: &str) -> Vec<Query> {
        let suffix = suffix.trim_end_matches('.').to_ascii_lowercase();
        let dotted = format!(".{suffix}");
        self.queries().into_iter().filter(|q| q.name == suffix || q.name.ends_with(&dotted)).collect()
    }

    /// Holds every later query for exactly `name` for `delay` before relaying it.
    pub fn delay(&self, name: &str, delay: Duration) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.state.delays.lock().unwrap().push((name, delay));
    }
}

impl Drop for DnsProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The question name (lower case, no trailing dot) and type of a DNS message.
pub fn question(msg: &[u8]) -> Option<(String, u16)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None; // no compression in a question
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let rtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    Some((labels.join("."), rtype))
}

fn relay_udp(front: &UdpSocket, upstream: SocketAddr, state: &Arc<State>) {
    let mut buf = [0u8; 65535];
    while !state.stop.load(Ordering::SeqCst) {
        let Ok((n, client)) = front.recv_from(&mut buf) else { continue };
        let msg = buf[..n].to_vec();
        let delay = state.note(&msg);
        let Ok(reply_to) = front.try_clone() else { continue };
        // One thread per query: a held query does not hold the others.
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let Ok(back) = UdpSocket::bind("127.0.0.1:0") else { return };
            let _ = back.set_read_timeout(Some(Duration::from_secs(3)));
            if back.send_to(&msg, upstream).is_err() {
                return;
            }
            let mut answer = [0u8; 65535];
            if let Ok(m) = back.recv(&mut answer) {
                let _ = reply_to.send_to(&answer[..m], client);
            }
        });
    }
}

fn accept_tcp(listener: &TcpListener, upstream: SocketAddr, state: &Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let state = state.clone();
                std::thread::spawn(move || relay_tcp(client, upstream, &state));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Relays one TCP connection: client messages (2-byte length, then the message) are noted
/// and forwarded one by one; the answers stream back unchanged.
fn relay_tcp(mut client: TcpStream, upstream: SocketAddr, state: &State) {
    let _ = client.set_nonblocking(false);
    let Ok(mut back) = TcpStream::connect_timeout(&upstream, Duration::from_secs(3)) else { return };
    let (Ok(mut answers_from), Ok(mut answers_to)) = (back.try_clone(), client.try_clone()) else { return };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut answers_from, &mut answers_to);
        let _ = answers_to.shutdown(std::net::Shutdown::Both);
    });
    loop {
        let mut len = [0u8; 2];
        if client.read_exact(&mut len).is_err() {
            break;
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if client.read_exact(&mut msg).is_err() {
            break;
        }
        std::thread::sleep(state.note(&msg));
        if back.write_all(&len).and_then(|()| back.write_all(&msg)).is_err() {
            break;
        }
    }
    let _ = back.shutdown(std::net::Shutdown::Both);
}
