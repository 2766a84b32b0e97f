//! `difflib.SequenceMatcher(None, a, b).ratio()` without junk heuristics (names are far
//! shorter than the 200 characters where Python's autojunk starts).

use std::collections::HashMap;

pub fn ratio(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    let mut positions: HashMap<char, Vec<usize>> = HashMap::new();
    for (index, ch) in b.iter().enumerate() {
        positions.entry(*ch).or_default().push(index);
    }
    let matches = matching_characters(&a, &positions, 0, a.len(), 0, b.len());
    2.0 * matches as f64 / total as f64
}

/// The sum of the matching blocks' sizes, found as difflib does: the longest match,
/// then recursively left and right of it.
fn matching_characters(
    a: &[char],
    positions: &HashMap<char, Vec<usize>>,
    a_low: usize,
    a_high: usize,
    b_low: usize,
    b_high: usize,
) -> usize {
    let (i, j, size) = longest_match(a, positions, a_low, a_high, b_low, b_high);
    if size == 0 {
        return 0;
    }
    size + matching_characters(a, positions, a_low, i, b_low, j)
        + matching_characters(a, positions, i + size, a_high, j + size, b_high)
}

fn longest_match(
    a: &[char],
    positions: &HashMap<char, Vec<usize>>,
    a_low: usize,
    a_high: usize,
    b_low: usize,
    b_high: usize,
) -> (usize, usize, usize) {
    let (mut best_i, mut best_j, mut best_size) = (a_low, b_low, 0);
    let mut lengths: HashMap<usize, usize> = HashMap::new();
    for (i, ch) in a.iter().enumerate().take(a_high).skip(a_low) {
        let mut next: HashMap<usize, usize> = HashMap::new();
        for &j in positions.get(ch).map(Vec::as_slice).unwrap_or_default() {
            if j < b_low {
                continue;
            }
            if j >= b_high {
                break;
            }
            let size = j
                .checked_sub(1)
                .and_then(|previous| lengths.get(&previous))
                .copied()
                .unwrap_or(0)
                + 1;
            next.insert(j, size);
            if size > best_size {
                best_i = i + 1 - size;
                best_j = j + 1 - size;
                best_size = size;
            }
        }
        lengths = next;
    }
    (best_i, best_j, best_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_difflib() {
        // Values from Python's difflib.SequenceMatcher(None, a, b).ratio().
        assert_eq!(ratio("abcd", "bcde"), 0.75);
        assert_eq!(ratio("hello_world", "hello_world"), 1.0);
        assert!((ratio("hello_world", "hello world") - 0.9090909090909091).abs() < 1e-12);
        assert!((ratio("calculator", "calculater") - 0.9).abs() < 1e-12);
        assert!((ratio("search", "research") - 0.8571428571428571).abs() < 1e-12);
        assert_eq!(ratio("", ""), 1.0);
        assert_eq!(ratio("abc", ""), 0.0);
    }
}
