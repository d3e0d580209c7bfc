//! The coordinator's clock, for the peers' offsets: a UDP service on the API's port.
//!
//! Each request is one datagram ([`cmesh_common::clock::request`]); the answer carries
//! the clock when the request was read and when the answer is sent
//! ([`cmesh_common::clock::reply`]). Nothing else is done on the way: no lock, no
//! parsing beyond the magic and the nonce, so both directions cost about the same and
//! the peers' intervals stay narrow. Anything that is not a request is dropped. A
//! request is as long as its answer (28 bytes), so the service cannot amplify traffic.

use tokio::net::UdpSocket;

/// Answers clock requests on `socket` until the task is dropped.
pub async fn serve(socket: UdpSocket) {
    let mut buf = [0u8; 64];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let t2 = cmesh_common::unix_micros();
        let Some(nonce) = cmesh_common::clock::parse_request(&buf[..n]) else {
            continue;
        };
        let reply = cmesh_common::clock::reply(nonce, t2, cmesh_common::unix_micros());
        if let Err(e) = socket.send_to(&reply, from).await {
            tracing::debug!("clock answer to {from}: {e}");
        }
    }
}
