//! Byte-level damage to well-formed requests: bits flipped, bytes set, inserted, deleted and
//! repeated, the message cut short, and tails a hostile encoder writes (lengths past the end,
//! overlong varints, reserved wire types, field 0, groups nested past prost's limit). A stream
//! may also get a frame of its own that is garbage.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::hostile::valid_call;
use crate::wire::Call;

#[derive(Debug, Clone)]
pub enum Mutation {
    Flip {
        at: Index,
        bit: u8,
    },
    Set {
        at: Index,
        byte: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Delete {
        at: Index,
        len: usize,
    },
    Truncate {
        at: Index,
    },
    /// The bytes from `at` on, `len` of them, written again after themselves.
    Repeat {
        at: Index,
        len: usize,
    },
    Append(Vec<u8>),
    /// For a stream, one more frame after the others; for a unary call, more bytes at the end.
    Frame(Vec<u8>),
}

/// A well-formed request and the damage done to its encoding.
#[derive(Debug, Clone)]
pub struct Mangled {
    pub call: Call,
    /// Which frame of a stream takes the damage.
    pub frame: Index,
    pub mutations: Vec<Mutation>,
}

/// Encodings a hostile client writes.
fn hostile_tail() -> BoxedStrategy<Vec<u8>> {
    let known: Vec<Vec<u8>> = vec![
        // field 1, length-delimited, claiming 4 GiB
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        // a length of 2^63
        vec![
            0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ],
        // a varint of 11 bytes
        vec![
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        // wire types 6 and 7 do not exist
        vec![0x0e],
        vec![0x0f, 0x00],
        // field number 0
        vec![0x00, 0x01],
        // groups nested deeper than prost recurses
        vec![0x0b; 150],
        // an empty group of an unknown field, which is fine
        vec![0x5b, 0x5c],
        // the highest field number, a varint: an unknown field, which is fine
        vec![0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01],
        // field 2 as a string of invalid UTF-8
        vec![0x12, 0x02, 0xc3, 0x28],
        // field 1 as a string of invalid UTF-8
        vec![0x0a, 0x01, 0xff],
        // a 32-bit field cut short
        vec![0x0d, 0x01],
    ];
    prop_oneof![2 => select(known), 1 => vec(any::<u8>(), 1..12)].boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        2 => (any::<Index>(), vec(any::<u8>(), 1..4))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<Index>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        2 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<Index>(), 1usize..32).prop_map(|(at, len)| Mutation::Repeat { at, len }),
        2 => hostile_tail().prop_map(Mutation::Append),
        1 => hostile_tail().prop_map(Mutation::Frame),
    ]
    .boxed()
}

pub fn mangled() -> BoxedStrategy<Mangled> {
    (valid_call(), any::<Index>(), vec(mutation(), 1..=2))
        .prop_map(|(call, frame, mutations)| Mangled {
            call,
            frame,
            mutations,
        })
        .boxed()
}

pub fn batch() -> BoxedStrategy<Vec<Mangled>> {
    vec(mangled(), 1..=5).boxed()
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    // a position in the message, its end included
    let at = |i: &Index, len: usize| i.index(len + 1);
    match m {
        Mutation::Flip { at: i, bit } if !bytes.is_empty() => {
            let p = i.index(bytes.len());
            bytes[p] ^= 1 << bit;
        }
        Mutation::Set { at: i, byte } if !bytes.is_empty() => {
            let p = i.index(bytes.len());
            bytes[p] = *byte;
        }
        Mutation::Flip { .. } | Mutation::Set { .. } => bytes.push(0x80),
        Mutation::Insert { at: i, bytes: b } => {
            let p = at(i, bytes.len());
            bytes.splice(p..p, b.iter().copied());
        }
        Mutation::Delete { at: i, len } => {
            let p = at(i, bytes.len());
            let end = (p + len).min(bytes.len());
            bytes.drain(p..end);
        }
        Mutation::Truncate { at: i } => {
            let p = at(i, bytes.len());
            bytes.truncate(p);
        }
        Mutation::Repeat { at: i, len } => {
            let p = at(i, bytes.len());
            let end = (p + len).min(bytes.len());
            let copy = bytes[p..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Append(b) | Mutation::Frame(b) => bytes.extend_from_slice(b),
    }
}

/// The frames of `call` with the damage done: to its one frame, or to the chosen frame of a
/// stream.
pub fn mangle(
    mut frames: Vec<Vec<u8>>,
    stream: bool,
    frame: &Index,
    mutations: &[Mutation],
) -> Vec<Vec<u8>> {
    if frames.is_empty() {
        frames.push(Vec::new());
    }
    let target = if stream { frame.index(frames.len()) } else { 0 };
    for m in mutations {
        match m {
            Mutation::Frame(b) if stream => frames.push(b.clone()),
            _ => apply(&mut frames[target], m),
        }
    }
    frames
}

/// Frame bytes for a failure message.
pub fn hex(frames: &[Vec<u8>]) -> String {
    frames
        .iter()
        .map(|f| {
            let shown: String = f.iter().take(256).map(|x| format!("{x:02x}")).collect();
            if f.len() > 256 {
                format!("{shown}...({} bytes)", f.len())
            } else {
                shown
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
