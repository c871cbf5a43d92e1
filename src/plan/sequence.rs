//! Stable rule sequence numbers: a rule keeps the number NSX already has whenever the manifest
//! order allows it, and new rules take numbers in the gaps, so adding or removing one rule never
//! rewrites the others.

use std::collections::BTreeMap;

/// Distance between consecutive new sequence numbers.
pub const GAP: i64 = 1_000;

/// Sequence numbers for rules in manifest order, keeping `previous` numbers where possible.
///
/// The rules that keep their number are a longest run whose previous numbers already increase in
/// manifest order; the others get evenly spread numbers between their kept neighbours. Only when
/// a gap is too small for the rules inserted into it is everything renumbered.
pub fn allocate_sequence(names: &[&str], previous: &BTreeMap<String, i64>) -> Vec<i64> {
    let prev: Vec<Option<i64>> = names.iter().map(|n| previous.get(*n).copied()).collect();
    let keep = longest_increasing(&prev);
    let mut out: Vec<Option<i64>> = (0..names.len())
        .map(|i| if keep.contains(&i) { prev[i] } else { None })
        .collect();
    let mut i = 0;
    while i < out.len() {
        if out[i].is_some() {
            i += 1;
            continue;
        }
        let start = i;
        while i < out.len() && out[i].is_none() {
            i += 1;
        }
        let count = (i - start) as i64;
        let lower = if start == 0 {
            0
        } else {
            out[start - 1].unwrap_or(0)
        };
        let step = match out.get(i).copied().flatten() {
            Some(upper) => {
                let step = (upper - lower) / (count + 1);
                if step < 1 {
                    return fresh(names.len());
                }
                step.min(GAP)
            }
            None => GAP,
        };
        for (k, slot) in out[start..i].iter_mut().enumerate() {
            *slot = Some(lower + step * (k as i64 + 1));
        }
    }
    out.into_iter().map(|s| s.unwrap_or(0)).collect()
}

fn fresh(n: usize) -> Vec<i64> {
    (1..=n as i64).map(|k| k * GAP).collect()
}

/// Indices of a longest strictly increasing subsequence of the known values (O(n log n)); ties
/// resolve towards earlier rules, deterministically.
fn longest_increasing(values: &[Option<i64>]) -> Vec<usize> {
    let known: Vec<(usize, i64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|x| *x > 0).map(|x| (i, x)))
        .collect();
    let mut tails: Vec<usize> = Vec::new(); // index into `known`
    let mut parent: Vec<Option<usize>> = vec![None; known.len()];
    for (k, &(_, v)) in known.iter().enumerate() {
        let pos = tails.partition_point(|&t| known[t].1 < v);
        parent[k] = pos.checked_sub(1).map(|p| tails[p]);
        if pos == tails.len() {
            tails.push(k);
        } else {
            tails[pos] = k;
        }
    }
    let mut out = Vec::new();
    let mut cur = tails.last().copied();
    while let Some(k) = cur {
        out.push(known[k].0);
        cur = parent[k];
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prev(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn new_rules_get_spaced_numbers() {
        assert_eq!(
            allocate_sequence(&["a", "b", "c"], &BTreeMap::new()),
            vec![1000, 2000, 3000]
        );
    }

    #[test]
    fn inserting_a_rule_keeps_the_others() {
        let p = prev(&[("a", 1000), ("b", 2000), ("c", 3000)]);
        assert_eq!(
            allocate_sequence(&["a", "x", "b", "c"], &p),
            vec![1000, 1500, 2000, 3000]
        );
        assert_eq!(
            allocate_sequence(&["x", "a", "b", "c"], &p),
            vec![500, 1000, 2000, 3000]
        );
        assert_eq!(
            allocate_sequence(&["a", "b", "c", "x"], &p),
            vec![1000, 2000, 3000, 4000]
        );
    }

    #[test]
    fn removing_a_rule_keeps_the_others() {
        let p = prev(&[("a", 1000), ("b", 2000), ("c", 3000)]);
        assert_eq!(allocate_sequence(&["a", "c"], &p), vec![1000, 3000]);
    }

    #[test]
    fn moving_a_rule_renumbers_only_that_rule() {
        let p = prev(&[("a", 1000), ("b", 2000), ("c", 3000)]);
        assert_eq!(
            allocate_sequence(&["c", "a", "b"], &p),
            vec![500, 1000, 2000]
        );
    }

    #[test]
    fn a_full_gap_renumbers_everything() {
        let p = prev(&[("a", 1), ("b", 2)]);
        assert_eq!(
            allocate_sequence(&["a", "x", "b"], &p),
            vec![1000, 2000, 3000]
        );
    }
}
