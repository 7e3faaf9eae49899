//! The swarm's messages and their bytes: a two-byte envelope (version, type) around SWIM
//! packets, signal batches and the anti-entropy exchange (digest, have, pull).
//! `docs/protocol.md` ("Messages") is the specification; integers are big-endian.

use super::signal::{Reader, SignalError};

/// The envelope version this code writes and reads.
pub(crate) const WIRE_VERSION: u8 = 1;
/// How many buckets an anti-entropy digest has. Fixed by the protocol version, so that two
/// members always compare like with like.
pub(crate) const BUCKETS: usize = 32;

const TYPE_SWIM: u8 = 1;
const TYPE_SIGNALS: u8 = 2;
const TYPE_DIGEST: u8 = 3;
const TYPE_HAVE: u8 = 4;
const TYPE_PULL: u8 = 5;

/// One bucket of a digest: how many live signals fall in it and the XOR of their
/// [`super::SignalId::hash64`]s. Equal summaries mean (all but certainly) equal sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BucketSummary {
    pub(crate) count: u32,
    pub(crate) xor: u64,
}

/// A compact description of the live signals a member holds: [`BUCKETS`] summaries,
/// the bucket of a signal being its `hash64 % BUCKETS`. Its size does not grow with the
/// swarm or the number of signals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) buckets: [BucketSummary; BUCKETS],
}

impl Digest {
    /// The buckets in which `self` and `other` differ, as a bit mask (bit i = bucket i).
    pub(crate) fn differing(&self, other: &Digest) -> u32 {
        let mut mask = 0;
        for (index, (mine, theirs)) in self.buckets.iter().zip(&other.buckets).enumerate() {
            if mine != theirs {
                mask |= 1 << index;
            }
        }
        mask
    }
}

/// A decoded message. Signal bytes are left encoded: each is checked on its own, so one
/// bad signal does not cost the others in the batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// A foca (SWIM) packet.
    Swim(&'a [u8]),
    /// Signals, pushed on first receipt or sent in answer to a pull.
    Signals(Vec<&'a [u8]>),
    /// "Here is what I hold": sent each round to one random member.
    Digest(Box<Digest>),
    /// The answer to a digest: the hashes of the sender's signals in the buckets that
    /// differ. `complete` says whether they are all of them (the list is size-capped).
    Have {
        buckets: u32,
        complete: bool,
        hashes: Vec<u64>,
    },
    /// "Send me these", by hash.
    Pull(Vec<u64>),
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("empty message")]
    Empty,
    #[error("unsupported wire version {0}")]
    Version(u8),
    #[error("unknown message type {0}")]
    Type(u8),
    #[error("malformed message: {0}")]
    Body(#[from] SignalError),
    #[error("trailing bytes after the message")]
    Trailing,
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Message<'_>, WireError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8().map_err(|_| WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let kind = reader.u8()?;
    let message = match kind {
        TYPE_SWIM => return Ok(Message::Swim(reader.rest())),
        TYPE_SIGNALS => {
            let count = reader.u16()?;
            let mut signals = Vec::with_capacity(usize::from(count).min(256));
            for _ in 0..count {
                let len = usize::from(reader.u16()?);
                signals.push(reader.take(len)?);
            }
            Message::Signals(signals)
        }
        TYPE_DIGEST => {
            let mask = reader.u32()?;
            let mut digest = Digest::default();
            for (index, bucket) in digest.buckets.iter_mut().enumerate() {
                if mask & (1 << index) != 0 {
                    bucket.count = reader.u32()?;
                    bucket.xor = reader.u64()?;
                }
            }
            Message::Digest(Box::new(digest))
        }
        TYPE_HAVE => {
            let buckets = reader.u32()?;
            let complete = match reader.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Body(SignalError::Truncated)),
            };
            let hashes = hashes(&mut reader)?;
            Message::Have {
                buckets,
                complete,
                hashes,
            }
        }
        TYPE_PULL => Message::Pull(hashes(&mut reader)?),
        other => return Err(WireError::Type(other)),
    };
    if !reader.rest().is_empty() {
        return Err(WireError::Trailing);
    }
    Ok(message)
}

fn hashes(reader: &mut Reader<'_>) -> Result<Vec<u64>, WireError> {
    let count = reader.u16()?;
    let mut out = Vec::with_capacity(usize::from(count).min(1024));
    for _ in 0..count {
        out.push(reader.u64()?);
    }
    Ok(out)
}

fn header(kind: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + capacity);
    out.push(WIRE_VERSION);
    out.push(kind);
    out
}

pub(crate) fn encode_swim(packet: &[u8]) -> Vec<u8> {
    let mut out = header(TYPE_SWIM, packet.len());
    out.extend_from_slice(packet);
    out
}

/// Packs signals into as few messages as fit in `max_len` bytes each. A signal is at most
/// [`super::signal::MAX_SIGNAL_LEN`] bytes, far below any sane `max_len`.
pub(crate) fn encode_signals<'a>(
    signals: impl IntoIterator<Item = &'a [u8]>,
    max_len: usize,
) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<(Vec<u8>, u16)> = None;
    for signal in signals {
        let fits = |message: &Vec<u8>, count: u16| {
            message.len() + 2 + signal.len() <= max_len && count < u16::MAX
        };
        if let Some((message, count)) = &current
            && !fits(message, *count)
        {
            messages.push(finish_signals(current.take()));
        }
        let (message, count) = current.get_or_insert_with(|| {
            let mut out = header(TYPE_SIGNALS, 2 + signal.len());
            out.extend_from_slice(&[0, 0]);
            (out, 0)
        });
        // A signal is at most MAX_SIGNAL_LEN (1024) bytes, so its length fits a u16.
        message.extend_from_slice(&(signal.len() as u16).to_be_bytes());
        message.extend_from_slice(signal);
        *count += 1;
    }
    if current.is_some() {
        messages.push(finish_signals(current));
    }
    messages
}

/// One signals message holding `signals` (encoded signals, or any bytes: tools and tests
/// inject what they like). Unlike the batching the core does, it never splits: keeping it
/// under the receiver's `max_message_size` is the caller's business.
pub fn signals_message<'a>(signals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    encode_signals(signals, usize::MAX)
        .pop()
        .unwrap_or_else(|| {
            let mut empty = header(TYPE_SIGNALS, 2);
            empty.extend_from_slice(&[0, 0]);
            empty
        })
}

fn finish_signals(batch: Option<(Vec<u8>, u16)>) -> Vec<u8> {
    let Some((mut message, count)) = batch else {
        return Vec::new();
    };
    message[2..4].copy_from_slice(&count.to_be_bytes());
    message
}

pub(crate) fn encode_digest(digest: &Digest) -> Vec<u8> {
    let mut mask = 0u32;
    let mut body = Vec::new();
    for (index, bucket) in digest.buckets.iter().enumerate() {
        if *bucket != BucketSummary::default() {
            mask |= 1 << index;
            body.extend_from_slice(&bucket.count.to_be_bytes());
            body.extend_from_slice(&bucket.xor.to_be_bytes());
        }
    }
    let mut out = header(TYPE_DIGEST, 4 + body.len());
    out.extend_from_slice(&mask.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// `hashes` must hold at most `u16::MAX` entries; callers cap it far lower.
pub(crate) fn encode_have(buckets: u32, complete: bool, hashes: &[u64]) -> Vec<u8> {
    let mut out = header(TYPE_HAVE, 7 + 8 * hashes.len());
    out.extend_from_slice(&buckets.to_be_bytes());
    out.push(u8::from(complete));
    push_hashes(&mut out, hashes);
    out
}

pub(crate) fn encode_pull(hashes: &[u64]) -> Vec<u8> {
    let mut out = header(TYPE_PULL, 2 + 8 * hashes.len());
    push_hashes(&mut out, hashes);
    out
}

fn push_hashes(out: &mut Vec<u8>, hashes: &[u64]) {
    let count = hashes.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for hash in &hashes[..count] {
        out.extend_from_slice(&hash.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let mut digest = Digest::default();
        digest.buckets[0] = BucketSummary { count: 2, xor: 9 };
        digest.buckets[31] = BucketSummary {
            count: 1,
            xor: u64::MAX,
        };
        let encoded = encode_digest(&digest);
        assert_eq!(encoded.len(), 2 + 4 + 2 * 12);
        assert_eq!(decode(&encoded), Ok(Message::Digest(Box::new(digest))));
        assert_eq!(
            decode(&encode_have(5, true, &[1, 2])),
            Ok(Message::Have {
                buckets: 5,
                complete: true,
                hashes: vec![1, 2]
            })
        );
        assert_eq!(decode(&encode_pull(&[7])), Ok(Message::Pull(vec![7])));
        assert_eq!(decode(&encode_swim(b"abc")), Ok(Message::Swim(b"abc")));
        let signals: Vec<&[u8]> = vec![b"one", b"two"];
        let messages = encode_signals(signals.iter().copied(), 1000);
        assert_eq!(messages.len(), 1);
        assert_eq!(decode(&messages[0]), Ok(Message::Signals(signals)));
    }

    #[test]
    fn signal_batches_respect_the_size_limit() {
        let signal = [0u8; 100];
        let messages = encode_signals(std::iter::repeat_n(&signal[..], 25), 1000);
        assert!(messages.iter().all(|m| m.len() <= 1000));
        let total: usize = messages
            .iter()
            .map(|m| match decode(m) {
                Ok(Message::Signals(s)) => s.len(),
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(total, 25);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[2, 1][..],
            &[1, 99][..],
            &[1, 2, 0, 5, 0][..],
            &[1, 3, 0xff, 0xff, 0xff, 0xff][..],
            &[1, 4, 0, 0, 0, 0, 7, 0, 0][..],
            &[1, 5, 0, 1, 0][..],
            &[1, 5, 0, 0, 0][..],
        ] {
            assert!(decode(bytes).is_err(), "{bytes:?}");
        }
    }
}
