//! identityd's durable state, in sled under the state directory: status list bits, the
//! allocation counter, and the issued-credential index (id, types, status index, dates —
//! never claim contents).
//!
//! Every write is flushed before the call returns, so an answer the HTTP API gave
//! (a credential issued, a revocation done) survives `kill -9`. Status changes update the
//! index and the list bits in one sled transaction.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::membership::STATUS_LIST_ENTRIES;

/// Bytes in one status list (one bit per entry).
pub const LIST_BYTES: usize = STATUS_LIST_ENTRIES / 8;
const NEXT_INDEX: &[u8] = b"next_index";

/// Why the state could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (disk full, corrupt, locked by another process).
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    /// A record is not valid JSON (written by another version?).
    #[error("corrupt record for {0}")]
    Corrupt(String),
    /// No credential with this id was issued here.
    #[error("no credential {0} was issued here")]
    NotFound(String),
    /// A credential with this id was already issued.
    #[error("a credential {0} was already issued")]
    Duplicate(String),
    /// Revocation is final.
    #[error("credential {0} is revoked; revocation is final")]
    Revoked(String),
}

/// The status of an issued credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Suspended,
    Revoked,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "active" => Some(Status::Active),
            "suspended" => Some(Status::Suspended),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Revoked => "revoked",
        }
    }
}

/// A status purpose, one list per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Revocation,
    Suspension,
}

impl Purpose {
    pub const ALL: [Purpose; 2] = [Purpose::Revocation, Purpose::Suspension];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Revocation => "revocation",
            Purpose::Suspension => "suspension",
        }
    }

    pub fn parse(text: &str) -> Option<Purpose> {
        match text {
            "revocation" => Some(Purpose::Revocation),
            "suspension" => Some(Purpose::Suspension),
            _ => None,
        }
    }
}

/// A status list's name in URLs: `{purpose}-{number}` (`/status/revocation-0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListId {
    pub purpose: Purpose,
    pub number: u32,
}

impl ListId {
    pub fn parse(text: &str) -> Option<ListId> {
        let (purpose, number) = text.rsplit_once('-')?;
        Some(ListId {
            purpose: Purpose::parse(purpose)?,
            number: number.parse().ok()?,
        })
    }

    fn key(self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl std::fmt::Display for ListId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.purpose.as_str(), self.number)
    }
}

/// What the index keeps about an issued credential: enough to revoke it and to audit
/// issuance, and no claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub id: String,
    pub types: Vec<String>,
    pub format: String,
    /// Status list number and index within it (the same index in both purposes' lists).
    pub list: u32,
    pub index: u32,
    pub issued_at: String,
    pub valid_until: Option<String>,
    pub status: Status,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    /// Credential id → [`Issued`] (JSON).
    issued: sled::Tree,
    /// [`ListId`] → bits.
    lists: sled::Tree,
}

impl Store {
    /// Opens (or creates) the database at `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        Ok(Store {
            issued: db.open_tree("issued")?,
            lists: db.open_tree("lists")?,
            db,
        })
    }

    /// Takes the next free status index: `(list number, index in list)`. A new list
    /// starts when one fills.
    pub fn allocate(&self) -> Result<(u32, u32), StoreError> {
        let previous = self.db.fetch_and_update(NEXT_INDEX, |old| {
            let next = old.map(decode_u64).unwrap_or(0) + 1;
            Some(next.to_be_bytes().to_vec())
        })?;
        self.db.flush()?;
        let taken = previous.as_deref().map(decode_u64).unwrap_or(0);
        let per_list = STATUS_LIST_ENTRIES as u64;
        Ok(((taken / per_list) as u32, (taken % per_list) as u32))
    }

    /// Status list numbers in use (every list up to the one being filled).
    pub fn list_numbers(&self) -> Result<Vec<u32>, StoreError> {
        let next = self
            .db
            .get(NEXT_INDEX)?
            .as_deref()
            .map(decode_u64)
            .unwrap_or(0);
        let lists = next.div_ceil(STATUS_LIST_ENTRIES as u64).max(1);
        Ok((0..lists as u32).collect())
    }

    /// Records an issued credential.
    pub fn record(&self, issued: &Issued) -> Result<(), StoreError> {
        let value =
            serde_json::to_vec(issued).map_err(|_| StoreError::Corrupt(issued.id.clone()))?;
        let result = self.issued.compare_and_swap(
            issued.id.as_bytes(),
            None as Option<&[u8]>,
            Some(value),
        )?;
        if result.is_err() {
            return Err(StoreError::Duplicate(issued.id.clone()));
        }
        self.db.flush()?;
        Ok(())
    }

    /// Whether a credential id was issued here.
    pub fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.issued.contains_key(id.as_bytes())?)
    }

    pub fn get(&self, id: &str) -> Result<Option<Issued>, StoreError> {
        self.issued
            .get(id.as_bytes())?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt(id.to_owned()))
            })
            .transpose()
    }

    /// How many credentials were issued.
    pub fn issued_count(&self) -> usize {
        self.issued.len()
    }

    /// Sets a credential's status and its bits in both lists, atomically. Revocation is
    /// final; suspension is reversible.
    pub fn set_status(&self, id: &str, status: Status) -> Result<Issued, StoreError> {
        let outcome = (&self.issued, &self.lists).transaction(|(issued, lists)| {
            use sled::transaction::ConflictableTransactionError::Abort;
            let Some(bytes) = issued.get(id.as_bytes())? else {
                return Err(Abort(StoreError::NotFound(id.to_owned())));
            };
            let mut record: Issued = serde_json::from_slice(&bytes)
                .map_err(|_| Abort(StoreError::Corrupt(id.to_owned())))?;
            if record.status == Status::Revoked && status != Status::Revoked {
                return Err(Abort(StoreError::Revoked(id.to_owned())));
            }
            for purpose in Purpose::ALL {
                let on = match purpose {
                    Purpose::Revocation => status == Status::Revoked,
                    // A revoked credential keeps its suspension bit as it was.
                    Purpose::Suspension => match status {
                        Status::Revoked => record.status == Status::Suspended,
                        other => other == Status::Suspended,
                    },
                };
                let key = ListId {
                    purpose,
                    number: record.list,
                }
                .key();
                let mut bits = lists
                    .get(&key)?
                    .map(|b| b.to_vec())
                    .unwrap_or_else(|| vec![0; LIST_BYTES]);
                bits.resize(LIST_BYTES, 0);
                let (byte, mask) = (record.index as usize / 8, 0x80u8 >> (record.index % 8));
                if on {
                    bits[byte] |= mask;
                } else {
                    bits[byte] &= !mask;
                }
                lists.insert(key, bits)?;
            }
            record.status = status;
            let value = serde_json::to_vec(&record)
                .map_err(|_| Abort(StoreError::Corrupt(id.to_owned())))?;
            issued.insert(id.as_bytes(), value)?;
            Ok(record)
        });
        let record = outcome.map_err(|err| match err {
            sled::transaction::TransactionError::Abort(err) => err,
            sled::transaction::TransactionError::Storage(err) => StoreError::Db(err),
        })?;
        self.db.flush()?;
        Ok(record)
    }

    /// The bits of a list (all zero when nothing in it changed yet).
    pub fn bits(&self, list: ListId) -> Result<Vec<u8>, StoreError> {
        let mut bits = self
            .lists
            .get(list.key())?
            .map(|b| b.to_vec())
            .unwrap_or_else(|| vec![0; LIST_BYTES]);
        bits.resize(LIST_BYTES, 0);
        Ok(bits)
    }
}

fn decode_u64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::bit_at;

    fn issued(id: &str, list: u32, index: u32) -> Issued {
        Issued {
            id: id.into(),
            types: vec!["VerifiableCredential".into()],
            format: "ldp_vc".into(),
            list,
            index,
            issued_at: "2026-01-01T00:00:00Z".into(),
            valid_until: None,
            status: Status::Active,
        }
    }

    #[test]
    fn suspension_is_reversible_and_revocation_final() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (list, index) = store.allocate().unwrap();
        assert_eq!((list, index), (0, 0));
        let (_, index) = store.allocate().unwrap();
        store.record(&issued("urn:x", list, index)).unwrap();
        assert!(matches!(
            store.record(&issued("urn:x", 0, 9)),
            Err(StoreError::Duplicate(_))
        ));

        let suspension = ListId {
            purpose: Purpose::Suspension,
            number: 0,
        };
        let revocation = ListId {
            purpose: Purpose::Revocation,
            number: 0,
        };
        store.set_status("urn:x", Status::Suspended).unwrap();
        assert_eq!(bit_at(&store.bits(suspension).unwrap(), 1), Some(true));
        store.set_status("urn:x", Status::Active).unwrap();
        assert_eq!(bit_at(&store.bits(suspension).unwrap(), 1), Some(false));
        store.set_status("urn:x", Status::Revoked).unwrap();
        assert_eq!(bit_at(&store.bits(revocation).unwrap(), 1), Some(true));
        assert!(matches!(
            store.set_status("urn:x", Status::Active),
            Err(StoreError::Revoked(_))
        ));
        assert!(matches!(
            store.set_status("urn:y", Status::Revoked),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(ListId::parse("revocation-0"), Some(revocation));
        assert_eq!(ListId::parse("other-0"), None);
    }
}
