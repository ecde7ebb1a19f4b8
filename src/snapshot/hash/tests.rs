//! Ring-hash and Maglev tables: balance, weights, stability when an endpoint leaves.

use super::*;

fn names(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("10.0.0.{i}:80").into_bytes()).collect()
}

/// How many of 30,000 hashes land on each endpoint.
fn spread(table: &HashTable, n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for k in 0..30_000u32 {
        counts[table.lookup(hash_bytes(&[&k.to_be_bytes()]), |_| false)] += 1;
    }
    counts
}

#[test]
fn ring_spreads_keys_over_equal_endpoints() {
    let table = ring(&names(3), &[1, 1, 1], 1024);
    for c in spread(&table, 3) {
        assert!((7_000..13_000).contains(&c), "{c} of 30,000 on one of three endpoints");
    }
}

#[test]
fn maglev_fills_every_slot_in_proportion_to_weight() {
    let HashTable::Maglev(slots) = maglev(&names(3), &[1, 1, 2], 65537) else { unreachable!() };
    assert!(slots.iter().all(|&s| s < 3), "every slot filled");
    let share = |i: u32| slots.iter().filter(|&&s| s == i).count();
    assert!(share(2).abs_diff(2 * share(0)) < 50, "weight 2 gets twice weight 1: {} vs {}", share(2), share(0));
    assert!(share(0).abs_diff(share(1)) < 50);
}

#[test]
fn maglev_with_a_size_that_is_not_prime_still_fills() {
    let HashTable::Maglev(slots) = maglev(&names(4), &[1, 1, 1, 1], 1000) else { unreachable!() };
    assert!(slots.iter().all(|&s| s < 4));
}

/// Removing one endpoint moves mostly the keys that were on it (the point of consistent hashing).
#[test]
fn removing_an_endpoint_keeps_the_others_keys_in_place() {
    for build in [|n: &[Vec<u8>], w: &[u64]| ring(n, w, 4096), |n: &[Vec<u8>], w: &[u64]| maglev(n, w, 65537)] {
        let all = names(4);
        let (before, after) = (build(&all, &[1; 4]), build(&all[..3], &[1; 3]));
        let mut moved = 0;
        for k in 0..10_000u32 {
            let h = hash_bytes(&[&k.to_be_bytes()]);
            let (b, a) = (before.lookup(h, |_| false), after.lookup(h, |_| false));
            if b != 3 && b != a {
                moved += 1;
            }
        }
        // Modulo hashing would move ~2/3 of them; the ring moves some as each remaining
        // endpoint gains points (its share grows from 1/4 to 1/3), Maglev a little.
        assert!(moved < 1_500, "{moved} of ~7,500 keys on the remaining endpoints moved");
    }
}

#[test]
fn lookup_walks_past_skipped_endpoints_and_falls_back_when_all_are() {
    for table in [ring(&names(3), &[1, 1, 1], 64), maglev(&names(3), &[1, 1, 1], 13)] {
        let h = hash_bytes(&[b"key"]);
        let first = table.lookup(h, |_| false);
        let second = table.lookup(h, |i| i == first);
        assert_ne!(first, second);
        assert_eq!(table.lookup(h, |_| true), first);
    }
}
