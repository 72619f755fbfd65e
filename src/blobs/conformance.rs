//! What every blob backend must do alike, as one check the test suites run on each: in
//! memory and on files (unit tests), and on an object store the integration tests start.

use std::io::Read;
use std::path::Path;

use super::{BlobError, Blobs, Body, Data};

/// `from` as a streamed body.
fn stream(from: &mut dyn Read) -> Body<'_> {
    Body::Read {
        from,
        source: Path::new("y.rpm"),
    }
}

/// Asserts a put was refused as not matching its checksum.
fn changed<T: std::fmt::Debug>(put: Result<T, BlobError>) {
    let e = put.unwrap_err();
    assert!(matches!(e, BlobError::Changed { .. }), "{e}");
}

/// Checks `b` against the trait's contract, panicking at the first difference. `r/` and
/// `rest/` under it are written and removed.
pub fn check(b: &dyn Blobs) {
    b.put("r/a/x.rpm", Body::Bytes(b"one"), None).unwrap();
    b.flush().unwrap();
    assert_eq!(b.get("r/a/x.rpm").unwrap().as_deref(), Some(&b"one"[..]));
    let m = b.stat("r/a/x.rpm").unwrap().unwrap();
    assert_eq!(m.len, 3);
    // Replaced: the ETag moves.
    b.put("r/a/x.rpm", Body::Bytes(b"two!"), None).unwrap();
    let m2 = b.stat("r/a/x.rpm").unwrap().unwrap();
    assert_eq!(m2.len, 4);
    assert_ne!(m.etag, m2.etag);
    // A checked stream that does not match stores nothing.
    changed(b.put("r/a/y.rpm", stream(&mut &b"abc"[..]), Some("00")));
    assert!(!b.exists("r/a/y.rpm").unwrap());
    // Ranges.
    let o = b.open("r/a/x.rpm", Some(1..3)).unwrap().unwrap();
    assert_eq!(o.meta.len, 4);
    match o.data {
        Data::Bytes(bytes) => assert_eq!(&bytes[..], b"wo"),
        Data::File(mut f) => {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(1)).unwrap();
            let mut two = [0; 2];
            f.read_exact(&mut two).unwrap();
            assert_eq!(&two, b"wo");
        }
        Data::Stream(mut r) => {
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"wo");
        }
    }
    // Create-only puts: the second finds the first's object and changes nothing (the
    // same bytes, as a content-named key's second writer has), from bytes and from a
    // stream.
    assert!(b.put_new("r/c/n.rpm", Body::Bytes(b"first"), None).unwrap());
    assert!(!b.put_new("r/c/n.rpm", Body::Bytes(b"first"), None).unwrap());
    assert!(
        !b.put_new("r/c/n.rpm", stream(&mut &b"first"[..]), None)
            .unwrap()
    );
    assert_eq!(b.get("r/c/n.rpm").unwrap().unwrap(), b"first");
    // One of the same length with other bytes (what a crash before the flush can leave
    // on a file system without a journal) is not taken for it: replaced.
    assert!(b.put_new("r/c/n.rpm", Body::Bytes(b"again"), None).unwrap());
    assert_eq!(b.get("r/c/n.rpm").unwrap().unwrap(), b"again");
    assert!(
        b.put_new("r/c/n.rpm", stream(&mut &b"first"[..]), None)
            .unwrap()
    );
    assert_eq!(b.get("r/c/n.rpm").unwrap().unwrap(), b"first");
    // Compared to the last byte, past what is read at once.
    let big = vec![7u8; 150_000];
    let mut other = big.clone();
    other[149_999] = 8;
    assert!(b.put_new("r/c/big.rpm", Body::Bytes(&big), None).unwrap());
    assert!(!b.put_new("r/c/big.rpm", Body::Bytes(&big), None).unwrap());
    assert!(
        b.put_new("r/c/big.rpm", stream(&mut &other[..]), None)
            .unwrap()
    );
    assert_eq!(b.get("r/c/big.rpm").unwrap().unwrap(), other);
    b.remove("r/c/big.rpm").unwrap();
    // What a put cut short leaves (an empty or short object) is replaced, from bytes
    // and from a stream, and a checked body that does not match still stores nothing.
    b.put("r/c/n.rpm", Body::Bytes(b""), None).unwrap();
    assert!(b.put_new("r/c/n.rpm", Body::Bytes(b"whole"), None).unwrap());
    assert_eq!(b.get("r/c/n.rpm").unwrap().unwrap(), b"whole");
    b.put("r/c/n.rpm", Body::Bytes(b"who"), None).unwrap();
    changed(b.put_new("r/c/n.rpm", stream(&mut &b"whole"[..]), Some("00")));
    assert_eq!(b.get("r/c/n.rpm").unwrap().unwrap(), b"who");
    let mut whole = &b"whole"[..];
    assert!(b.put_new("r/c/n.rpm", stream(&mut whole), None).unwrap());
    assert_eq!(b.get("r/c/n.rpm").unwrap().unwrap(), b"whole");
    b.remove("r/c/n.rpm").unwrap();
    // Copies, lists, removals.
    b.copy("r/a/x.rpm", "r/b/c/z.rpm").unwrap();
    b.put("rest/k", Body::Bytes(b"k"), None).unwrap();
    assert_eq!(b.get("r/b/c/z.rpm").unwrap().unwrap(), b"two!");
    assert_eq!(b.list("r").unwrap(), ["r/a/x.rpm", "r/b/c/z.rpm"]);
    assert_eq!(b.list("r/b").unwrap(), ["r/b/c/z.rpm"]);
    b.remove("r/a/x.rpm").unwrap();
    b.remove("r/a/x.rpm").unwrap();
    assert!(b.open("r/a/x.rpm", None).unwrap().is_none());
    assert_eq!(b.get("r/b/c/z.rpm").unwrap().unwrap(), b"two!");
    b.remove_all("r").unwrap();
    assert!(b.list("r").unwrap().is_empty());
    assert!(b.exists("rest/k").unwrap());
    assert!(b.put("../x", Body::Bytes(b""), None).is_err());
    assert!(b.open("a//b", None).is_err());
}
