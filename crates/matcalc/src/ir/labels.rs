//! Index labels of one operand of a product: a short inline list of small ints.

use std::fmt;
use std::ops::Deref;

/// Most axes a tensor may have in the IR.
pub const MAX_ORDER: usize = 12;

/// An inline list of distinct index labels (at most [`MAX_ORDER`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Labels {
    len: u8,
    items: [u8; MAX_ORDER],
}

impl Labels {
    /// The empty list.
    pub const EMPTY: Labels = Labels {
        len: 0,
        items: [0; MAX_ORDER],
    };

    /// From a slice. Panics beyond [`MAX_ORDER`] (typing enforces the limit first).
    pub fn from_slice(s: &[u8]) -> Labels {
        assert!(s.len() <= MAX_ORDER, "tensor order {} exceeds {MAX_ORDER}", s.len());
        let mut l = Labels::EMPTY;
        l.items[..s.len()].copy_from_slice(s);
        l.len = s.len() as u8;
        l
    }

    /// `start, start+1, …, start+n-1`.
    pub fn range(start: u8, n: usize) -> Labels {
        let v: Vec<u8> = (0..n as u8).map(|k| start + k).collect();
        Labels::from_slice(&v)
    }

    /// Concatenation.
    pub fn concat(&self, other: &[u8]) -> Labels {
        let mut v = self.to_vec();
        v.extend_from_slice(other);
        Labels::from_slice(&v)
    }

    /// Apply a label map.
    pub fn map(&self, f: impl Fn(u8) -> u8) -> Labels {
        let v: Vec<u8> = self.iter().map(|&l| f(l)).collect();
        Labels::from_slice(&v)
    }

    /// Position of a label.
    pub fn pos(&self, l: u8) -> Option<usize> {
        self.iter().position(|&x| x == l)
    }

    /// Whether the label occurs.
    pub fn has(&self, l: u8) -> bool {
        self.contains(&l)
    }
}

impl Deref for Labels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.items[..self.len as usize]
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &l in self.iter() {
            let c = if l < 26 { (b'a' + l) as char } else { '?' };
            if c == '?' {
                write!(f, "<{l}>")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if self.is_empty() {
            f.write_str("·")?;
        }
        Ok(())
    }
}
