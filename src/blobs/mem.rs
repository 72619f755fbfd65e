//! Objects in memory: no file system, no names materialised. Unit tests run publishing,
//! indexing and serving on it to show that nothing above the trait needs a directory.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::RwLock;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{BlobError, Blobs, Body, Meta, Object, check_key};

/// Objects by key: the bytes (shared by copies) and what readers are told.
type Objects = BTreeMap<String, (bytes::Bytes, Meta)>;

#[derive(Default)]
pub struct MemBlobs {
    objects: RwLock<Objects>,
}

fn meta(bytes: &[u8]) -> Meta {
    Meta {
        len: bytes.len() as u64,
        modified: SystemTime::now(),
        etag: format!("\"{:.16x}\"", Sha256::digest(bytes)),
    }
}

impl MemBlobs {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The keys below `prefix/` in `map`.
fn under<'a, V>(map: &'a BTreeMap<String, V>, prefix: &str) -> impl Iterator<Item = &'a String> {
    let start = format!("{prefix}/");
    map.range(start.clone()..)
        .map(|(k, _)| k)
        .take_while(move |k| k.starts_with(&start))
}

impl Blobs for MemBlobs {
    fn is_local(&self) -> bool {
        true
    }

    fn put(&self, key: &str, body: Body<'_>, sha256: Option<&str>) -> Result<(), BlobError> {
        check_key(key)?;
        let bytes = body.into_checked(key, sha256)?;
        let m = meta(&bytes);
        self.write().insert(key.to_string(), (bytes.into(), m));
        Ok(())
    }

    fn flush(&self) -> Result<(), BlobError> {
        Ok(())
    }

    fn open(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<Object>, BlobError> {
        check_key(key)?;
        let objects = self.read();
        let Some((bytes, meta)) = objects.get(key) else {
            return Ok(None);
        };
        Ok(Some(Object::in_memory(meta.clone(), bytes.clone(), range)))
    }

    fn stat(&self, key: &str) -> Result<Option<Meta>, BlobError> {
        check_key(key)?;
        Ok(self.read().get(key).map(|(_, m)| m.clone()))
    }

    fn remove(&self, key: &str) -> Result<(), BlobError> {
        check_key(key)?;
        self.write().remove(key);
        Ok(())
    }

    fn remove_all(&self, prefix: &str) -> Result<(), BlobError> {
        check_key(prefix)?;
        let mut objects = self.write();
        let gone: Vec<String> = under(&objects, prefix).cloned().collect();
        for k in gone {
            objects.remove(&k);
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        check_key(prefix)?;
        Ok(under(&self.read(), prefix).cloned().collect())
    }

    fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        check_key(from)?;
        check_key(to)?;
        let mut objects = self.write();
        let Some(object) = objects.get(from).cloned() else {
            return Err(BlobError::Io {
                path: from.into(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        objects.insert(to.to_string(), object);
        Ok(())
    }
}
