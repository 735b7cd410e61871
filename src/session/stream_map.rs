//! A session's streams by number: a `Vec` kept sorted by key. A session has one stream (legacy
//! SSE) or a few (Streamable HTTP, at most `DONE_STREAMS_KEPT` finished ones besides the live),
//! so a search over a `Vec` is as fast as a B-tree and costs one small allocation instead of
//! a 1.4 KiB leaf per session (which at 10,000 idle SSE streams was 14 MB).

/// The subset of `BTreeMap<u32, V>` a session uses, in key order.
pub(super) struct StreamMap<V>(Vec<(u32, V)>);

impl<V> StreamMap<V> {
    pub(super) fn new() -> Self {
        StreamMap(Vec::new())
    }

    fn find(&self, k: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&k, |(n, _)| *n)
    }

    pub(super) fn get(&self, k: &u32) -> Option<&V> {
        self.find(*k).ok().map(|i| &self.0[i].1)
    }

    pub(super) fn get_mut(&mut self, k: &u32) -> Option<&mut V> {
        self.find(*k).ok().map(|i| &mut self.0[i].1)
    }

    /// Inserts or replaces; returns the value replaced.
    pub(super) fn insert(&mut self, k: u32, v: V) -> Option<V> {
        match self.find(k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                // Exact growth: most sessions never hold more than one stream.
                self.0.reserve_exact(1);
                self.0.insert(i, (k, v));
                None
            }
        }
    }

    pub(super) fn remove(&mut self, k: &u32) -> Option<V> {
        self.find(*k).ok().map(|i| self.0.remove(i).1)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (&u32, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(super) fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&u32, &mut V)> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub(super) fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub(super) fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::StreamMap;

    #[test]
    fn keeps_key_order_and_replaces() {
        let mut m = StreamMap::new();
        for k in [3, 0, 7, 1] {
            assert!(m.insert(k, k * 10).is_none());
        }
        assert_eq!(m.insert(7, 71), Some(70));
        assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), [(0, 0), (1, 10), (3, 30), (7, 71)]);
        assert_eq!(m.iter().rev().find(|(k, _)| **k != 7).map(|(k, _)| *k), Some(3), "newest first, as route.rs looks");
        assert_eq!(m.remove(&1), Some(10));
        assert_eq!(m.remove(&1), None);
        assert_eq!((m.get(&3), m.get(&1), m.len()), (Some(&30), None, 3));
        *m.get_mut(&0).unwrap() += 5;
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [5, 30, 71]);
    }
}
