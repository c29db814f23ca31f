//! Property tests of hostlists: `compress` then `expand` gives the same set of names, counts are
//! the product of the group sizes, and `expand` never panics on any input, however malformed.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

/// Names like operators give boards: a prefix, maybe a (padded) number, maybe a suffix.
fn board_name() -> impl Strategy<Value = String> {
    ("[a-z]{1,3}[-_.]?", proptest::option::of("[0-9]{1,4}"), "([.-][a-z]{1,2})?")
        .prop_map(|(p, n, s)| format!("{p}{}{s}", n.unwrap_or_default()))
}

/// Distinct numbers written as a bracket group, consecutive ones as ranges.
fn group() -> impl Strategy<Value = (String, usize)> {
    proptest::collection::btree_set(0u64..60, 1..8).prop_map(|set| {
        let values: Vec<u64> = set.iter().copied().collect();
        let mut items = Vec::new();
        let mut i = 0;
        while i < values.len() {
            let mut j = i;
            while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
                j += 1;
            }
            items.push(if i == j { values[i].to_string() } else { format!("{}-{}", values[i], values[j]) });
            i = j + 1;
        }
        (format!("[{}]", items.join(",")), set.len())
    })
}

proptest! {
    #[test]
    fn expand_of_compress_is_the_same_set(names in proptest::collection::vec(board_name(), 0..40)) {
        let compressed = compress(&names).unwrap();
        let expected: BTreeSet<String> = names.iter().cloned().collect();
        let back: BTreeSet<String> = if names.is_empty() {
            BTreeSet::new()
        } else {
            expand(&compressed).unwrap().into_iter().collect()
        };
        prop_assert_eq!(back, expected, "compressed: {}", compressed);
    }

    #[test]
    fn expansion_count_is_the_product_of_group_sizes(
        prefix in "[a-z]{1,3}",
        groups in proptest::collection::vec((group(), "[a-z-]{1,2}"), 1..4),
    ) {
        let mut pattern = prefix;
        let mut product = 1;
        for ((text, size), sep) in &groups {
            pattern.push_str(text);
            pattern.push_str(sep);
            product *= size;
        }
        let names = expand(&pattern).unwrap();
        prop_assert_eq!(names.len(), product, "pattern: {}", pattern);
    }

    #[test]
    fn expand_never_panics_and_keeps_its_promises(input in "\\PC{0,40}") {
        check_expansion(&input)?;
    }

    #[test]
    fn expand_never_panics_on_bracket_soup(input in "[a-c0-9\\[\\],\\- ]{0,30}") {
        check_expansion(&input)?;
    }
}

fn check_expansion(input: &str) -> Result<(), TestCaseError> {
    if let Ok(names) = expand(input) {
        prop_assert!(names.len() <= MAX_NAMES);
        let unique: HashSet<&String> = names.iter().collect();
        prop_assert_eq!(unique.len(), names.len());
        // What expand produced, compress can write back.
        let back: HashSet<String> = expand(&compress(&names).unwrap()).unwrap().into_iter().collect();
        prop_assert_eq!(back, names.into_iter().collect::<HashSet<_>>());
    }
    Ok(())
}
