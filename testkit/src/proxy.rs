//! A TCP proxy in front of a database that a test can switch off and on: off, it stops
//! listening (new connections are refused) and cuts every open connection; on, it listens on the
//! same address again and forwards. To Roost that is the database server stopping and starting,
//! without stopping the shared server other tests run against.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A switchable proxy from [`Proxy::addr`] to a target address.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    /// Starts forwarding from a free port of 127.0.0.1 to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = Some(tokio::spawn(accept(listener, target, connections.clone())));
        Proxy { addr, target, accept, connections }
    }

    /// [`Proxy::start`] in front of the PostgreSQL server of `url`
    /// (`postgresql://user@127.0.0.1:port/db`); returns the proxy and the URL through it.
    pub async fn postgres(url: &str) -> (Proxy, String) {
        let host = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap();
        let target: SocketAddr = host.parse().unwrap_or_else(|e| panic!("{host} in {url}: {e}"));
        let proxy = Proxy::start(target).await;
        let via = url.replacen(host, &proxy.addr.to_string(), 1);
        (proxy, via)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and cuts every connection through it.
    pub async fn off(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Listens on its address again (waiting up to 10 s for the port) and forwards.
    pub async fn on(&mut self) {
        if self.accept.is_some() {
            return;
        }
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if tries < 200 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("proxy: listening on {} again: {e}", self.addr),
            }
        };
        self.accept = Some(tokio::spawn(accept(listener, self.target, self.connections.clone())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = &self.accept {
            accept.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, connections: Arc<Mutex<Vec<AbortHandle>>>) {
    while let Ok((mut client, _)) = listener.accept().await {
        let task = tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else { return };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        let mut open = connections.lock().unwrap();
        open.retain(|c| !c.is_finished());
        open.push(task.abort_handle());
    }
}
