//! A RADIUS relay on loopback that can hold the supplicant's traffic after the first
//! Access-Accept, so a test can change what the server trusts between an authentication
//! and its re-authentication (`eapol_test -r`), which otherwise follow each other within
//! milliseconds in one process (the only place the supplicant keeps its TLS session).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The two loopback sockets of a UDP relay to 127.0.0.1:`server_port`: `front` (bound to
/// a free port, returned with it) takes the client's packets, `back` is connected to the
/// server. Both wake every `poll` so the relay threads can notice a stop.
pub fn loopback_pair(server_port: u16, poll: Duration) -> (UdpSocket, UdpSocket, u16) {
    let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay upstream");
    back.connect(("127.0.0.1", server_port)).expect("connect upstream");
    for s in [&front, &back] {
        s.set_read_timeout(Some(poll)).expect("timeout");
    }
    let port = front.local_addr().expect("addr").port();
    (front, back, port)
}

/// RADIUS code of Access-Accept.
const ACCESS_ACCEPT: u8 = 2;

#[derive(Default)]
struct Gate {
    /// An Access-Accept went back to the supplicant.
    accepted: AtomicBool,
    /// The test let the held traffic through.
    released: AtomicBool,
    stop: AtomicBool,
}

/// The relay: point the supplicant at [`Relay::port`].
pub struct Relay {
    port: u16,
    gate: Arc<Gate>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Relays 127.0.0.1:<new port> <-> 127.0.0.1:`server_port`. Once an Access-Accept has
    /// passed, further supplicant packets wait until [`Relay::release`].
    pub fn hold_after_first_accept(server_port: u16) -> Relay {
        let (front, back, port) = loopback_pair(server_port, Duration::from_millis(50));
        let gate = Arc::new(Gate::default());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();

        let up = {
            let (front, back, gate, client) =
                (front.try_clone().expect("dup"), back.try_clone().expect("dup"), gate.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !gate.stop.load(Ordering::SeqCst) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                    *client.lock().unwrap() = Some(from);
                    while gate.accepted.load(Ordering::SeqCst)
                        && !gate.released.load(Ordering::SeqCst)
                        && !gate.stop.load(Ordering::SeqCst)
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let _ = back.send(&buf[..n]);
                }
            })
        };
        let down = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !gate.stop.load(Ordering::SeqCst) {
                    let Ok(n) = back.recv(&mut buf) else { continue };
                    let to = *client.lock().unwrap();
                    if let Some(to) = to {
                        let _ = front.send_to(&buf[..n], to);
                    }
                    if buf.first() == Some(&ACCESS_ACCEPT) {
                        gate.accepted.store(true, Ordering::SeqCst);
                    }
                }
            })
        };
        Relay { port, gate, threads: vec![up, down] }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits (bounded) for the first Access-Accept to have passed.
    pub fn wait_accepted(&self, limit: Duration) -> bool {
        super::poll_until(limit, || self.gate.accepted.load(Ordering::SeqCst))
    }

    /// Lets the held traffic through, and everything after it.
    pub fn release(&self) {
        self.gate.released.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.gate.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
