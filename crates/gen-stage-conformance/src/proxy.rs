//! A TCP proxy between a client and the server, to cut connections and refuse new
//! ones without touching the shared server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections on a port of its own to `upstream`: the kit's broker fault.
/// Cut every open connection, refuse the next few, then let them through again.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    /// Connections still to refuse (accepted, then closed at once).
    refusing: Arc<AtomicU32>,
    /// Bumped to cut every open connection.
    cuts: watch::Sender<u64>,
    /// Connections refused so far.
    refused: Arc<AtomicU32>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards what connects to `upstream`.
    ///
    /// # Errors
    ///
    /// No loopback port could be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let refusing = Arc::new(AtomicU32::new(0));
        let refused = Arc::new(AtomicU32::new(0));
        let (cuts, _) = watch::channel(0);
        let (to_refuse, counted, cut) = (refusing.clone(), refused.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let refuse = to_refuse
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok();
                if refuse {
                    counted.fetch_add(1, Ordering::AcqRel);
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(client, upstream, cut.subscribe()));
            }
        });
        Ok(Proxy {
            address,
            refusing,
            cuts,
            refused,
        })
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Cuts every open connection and refuses the next `refuse` ones.
    pub fn cut(&self, refuse: u32) {
        self.refusing.store(refuse, Ordering::Release);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::Acquire)
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    cut.mark_unchanged();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {}
    }
}
