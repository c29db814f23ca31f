//! Unit tests of hostlist expansion and compression: the syntax, the errors and their columns,
//! padding, de-duplication and the name limit.

use super::*;

fn names(s: &str) -> Vec<String> {
    expand(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn expands_the_older_board_managers_example() {
    assert_eq!(
        names("esp8266-0[08-11],wipy2-[1,3,7]"),
        ["esp8266-008", "esp8266-009", "esp8266-010", "esp8266-011", "wipy2-1", "wipy2-3", "wipy2-7"]
    );
}

#[test]
fn ranges_are_padded_to_the_width_of_their_start() {
    assert_eq!(names("b[08-11]"), ["b08", "b09", "b10", "b11"]);
    assert_eq!(names("b[8-11]"), ["b8", "b9", "b10", "b11"]);
    assert_eq!(names("b[1-10]").len(), 10);
    assert_eq!(names("b[1-10]")[9], "b10");
    assert_eq!(names("b[008-010]"), ["b008", "b009", "b010"]);
    assert_eq!(names("b[98-101]"), ["b98", "b99", "b100", "b101"]);
    assert_eq!(names("b[07]"), ["b07"]);
    assert_eq!(names("b[0-2]"), ["b0", "b1", "b2"]);
}

#[test]
fn groups_mix_numbers_and_ranges() {
    assert_eq!(names("n[1-3,7,09-10]"), ["n1", "n2", "n3", "n7", "n09", "n10"]);
    assert_eq!(names("n[ 1 - 2 , 5 ]"), ["n1", "n2", "n5"]);
}

#[test]
fn several_groups_expand_to_the_cartesian_product_in_order() {
    assert_eq!(names("rack[1-2]-b[1-2]"), ["rack1-b1", "rack1-b2", "rack2-b1", "rack2-b2"]);
    assert_eq!(names("[1-2][3-4]"), ["13", "14", "23", "24"]);
}

#[test]
fn commas_inside_brackets_do_not_split_names() {
    assert_eq!(names("a[1,2],b"), ["a1", "a2", "b"]);
    assert_eq!(names(" a , b "), ["a", "b"]);
    assert_eq!(names("[1,2]x"), ["1x", "2x"]);
}

#[test]
fn plain_names_stand_for_themselves() {
    assert_eq!(names("board.local"), ["board.local"]);
    assert_eq!(names("a,b,c"), ["a", "b", "c"]);
}

#[test]
fn duplicates_keep_the_first_position() {
    assert_eq!(names("b,a,b,a[1-2],a1"), ["b", "a", "a1", "a2"]);
    assert_eq!(names("x[1,1,1-2]"), ["x1", "x2"]);
}

#[test]
fn bad_syntax_names_problem_and_column() {
    let err = |s: &str| expand(s).unwrap_err();
    assert_eq!(err("a[1-2"), HostlistError::Unclosed { column: 2 });
    assert_eq!(err("a1-2]"), HostlistError::UnexpectedClose { column: 5 });
    assert_eq!(err("a[1[2]]"), HostlistError::Nested { column: 4 });
    assert_eq!(err("a[]"), HostlistError::EmptyRange { column: 3 });
    assert_eq!(err("a[1,]"), HostlistError::EmptyRange { column: 5 });
    assert_eq!(err("a[1-]"), HostlistError::EmptyRange { column: 3 });
    assert_eq!(err("a[-3]"), HostlistError::EmptyRange { column: 3 });
    assert_eq!(err("a[5-2]"), HostlistError::Backwards { start: "5".into(), end: "2".into(), column: 3 });
    assert_eq!(err("a[x]"), HostlistError::NotANumber { text: "x".into(), column: 3 });
    assert_eq!(err("a[1-2-3]"), HostlistError::NotANumber { text: "2-3".into(), column: 5 });
    assert_eq!(err("a,,b"), HostlistError::EmptyName { column: 3 });
    assert_eq!(err("a,"), HostlistError::EmptyName { column: 3 });
    assert_eq!(err(""), HostlistError::EmptyName { column: 1 });
    assert_eq!(err("  "), HostlistError::EmptyName { column: 3 });
    assert!(matches!(err("a[99999999999999999999]"), HostlistError::NumberTooLarge { .. }));
}

#[test]
fn error_messages_read_well() {
    let msg = |s: &str| expand(s).unwrap_err().to_string();
    assert_eq!(msg("esp[1-3"), "unclosed '[' at column 4");
    assert_eq!(msg("esp[5-2]"), "range 5-2 goes backwards at column 5");
    assert_eq!(msg("esp[]"), "empty range at column 5");
    assert_eq!(msg("esp[a]"), "not a number: \"a\" at column 5");
    assert_eq!(msg("a,,b"), "empty name at column 3");
    assert_eq!(msg("b[1-99999999]"), "hostlist expands to more than 100000 names");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(expand("é[1-"), Err(HostlistError::Unclosed { column: 2 }));
}

#[test]
fn huge_expansions_are_refused_before_building() {
    assert_eq!(expand("b[1-99999999]"), Err(HostlistError::TooManyNames));
    assert_eq!(expand("b[0-18446744073709551615]"), Err(HostlistError::TooManyNames));
    assert_eq!(expand("a[1-1000]b[1-1000]"), Err(HostlistError::TooManyNames));
    assert_eq!(expand("a[1-60000],b[1-60000]"), Err(HostlistError::TooManyNames));
    assert_eq!(expand("a[1-100000]").map(|n| n.len()), Ok(MAX_NAMES));
}

#[test]
fn compress_groups_numbers_into_ranges() {
    let c = |names: &[&str]| compress(names).unwrap();
    assert_eq!(c(&["wipy2-1", "wipy2-3", "wipy2-7"]), "wipy2-[1,3,7]");
    assert_eq!(c(&["b08", "b09", "b10", "b11"]), "b[08-11]");
    assert_eq!(c(&["b8", "b9", "b10", "b11"]), "b[8-11]");
    assert_eq!(c(&["b3", "b1", "b2", "b2"]), "b[1-3]");
    assert_eq!(c(&["solo"]), "solo");
    assert_eq!(c(&["x7"]), "x7");
    assert_eq!(c(&["a1", "other", "a2"]), "a[1-2],other");
    assert_eq!(c(&["n1.local", "n2.local"]), "n[1-2].local");
    assert_eq!(c(&["b8", "b08"]), "b[8,08]");
    assert_eq!(c(&["ab", "ab12", "ab13"]), "ab,ab[12-13]");
    assert_eq!(c(&[]), "");
}

#[test]
fn compress_refuses_names_that_cannot_be_written() {
    for bad in ["", " a", "a,b", "a[1]", "x]"] {
        assert!(matches!(compress(&[bad]), Err(HostlistError::Unrepresentable { .. })), "{bad:?}");
    }
}

#[test]
fn compress_then_expand_gives_the_same_names() {
    let input = ["esp8266-008", "esp8266-009", "esp8266-010", "esp8266-011", "wipy2-1", "wipy2-3"];
    let back = names(&compress(&input).unwrap());
    assert_eq!(back, input);
}
