//! The mesh backend's wire frames as a peer reads them from any connection (a stranger's
//! included): a length prefix and a postcard body. Decoding never panics, and a frame that
//! decodes encodes back to one that decodes the same.
#![no_main]
use cmesh_peer::backend::mesh::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = wire::decode(data) {
        let again = wire::encode(&frame);
        let body = &again[4..];
        assert_eq!(wire::decode(body).ok().as_ref(), Some(&frame));
    }
    // The same bytes as a stream with length prefixes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut r = data;
        while let Ok(Some(_)) = wire::read(&mut r).await {}
    });
});
