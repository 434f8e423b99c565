//! Ollama's built-in chat templates and the matching of a GGUF's `tokenizer.chat_template`
//! (a Jinja template) against them.
//!
//! Ollama keeps a list of known Jinja chat templates, each mapped to one of its own Go templates. A
//! model whose Jinja template is within edit distance 100 of a known one gets that Go template (and
//! its stop words) as layers. The templates in `ollama/` are Ollama's files, byte for byte, because
//! the stored blobs must have Ollama's digests (see `scripts/vendor-ollama.sh`).

use std::sync::OnceLock;

use serde::Deserialize;

/// One of Ollama's built-in templates.
#[derive(Debug)]
pub struct NamedTemplate {
    /// Ollama's name for it, e.g. `chatml` or `llama3-instruct`.
    pub name: &'static str,
    /// The Go template, as Ollama stores it in the `.template` layer.
    pub template: String,
    /// The `.params` layer Ollama stores with it (Go's JSON encoding of its stop words, with a
    /// trailing newline), when the template has parameters.
    pub params: Option<Vec<u8>>,
}

/// Edit distances at or above this are not a match (Ollama's threshold).
const MAX_DISTANCE: usize = 100;

macro_rules! vendored {
    ($($name:literal),* $(,)?) => {
        &[$(($name,
             include_str!(concat!("ollama/", $name, ".gotmpl")),
             include_str!(concat!("ollama/", $name, ".json")))),*]
    };
}

/// Every name in `index.json` with its Go template and parameters file.
const FILES: &[(&str, &str, &str)] = vendored![
    "alfred",
    "alpaca",
    "chatml",
    "chatqa",
    "codellama-70b-instruct",
    "command-r",
    "falcon-instruct",
    "gemma-instruct",
    "gemma3-instruct",
    "granite-instruct",
    "llama2-chat",
    "llama3-instruct",
    "magicoder",
    "mistral-instruct",
    "openchat",
    "phi-3",
    "solar-instruct",
    "starcoder2-instruct",
    "zephyr",
];

const INDEX: &str = include_str!("ollama/index.json");

#[derive(Deserialize)]
struct IndexEntry {
    name: String,
    template: String,
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    stop: Option<Vec<String>>,
}

#[derive(serde::Serialize)]
struct StopOnly<'a> {
    stop: &'a Option<Vec<String>>,
}

/// The index: each known Jinja template with the built-in template it maps to, in Ollama's order
/// (the first of equally close entries wins).
fn index() -> &'static [(String, &'static NamedTemplate)] {
    static INDEX_TABLE: OnceLock<Vec<(String, &'static NamedTemplate)>> = OnceLock::new();
    INDEX_TABLE.get_or_init(|| {
        let named: &'static [NamedTemplate] = FILES
            .iter()
            .map(|(name, gotmpl, json)| {
                let params: Params =
                    serde_json::from_str(json).expect("vendored parameters are valid JSON");
                NamedTemplate {
                    name,
                    template: gotmpl.replace("\r\n", "\n"),
                    params: Some(
                        kiln_api::try_to_go_json_line(&StopOnly { stop: &params.stop })
                            .expect("a list of strings encodes"),
                    ),
                }
            })
            .collect::<Vec<_>>()
            .leak();
        let entries: Vec<IndexEntry> =
            serde_json::from_str(INDEX).expect("vendored index is valid JSON");
        entries
            .into_iter()
            .map(|e| {
                let t = named
                    .iter()
                    .find(|t| t.name == e.name)
                    .expect("every indexed template is vendored");
                (e.template, t)
            })
            .collect()
    })
}

/// The built-in template Ollama would pick for a GGUF's `tokenizer.chat_template`, if any: the
/// first index entry at the smallest edit distance (in Unicode scalar values), when below 100.
pub fn detect(chat_template: &str) -> Option<&'static NamedTemplate> {
    if chat_template.is_empty() {
        return None;
    }
    let wanted: Vec<char> = chat_template.chars().collect();
    let mut best: Option<&'static NamedTemplate> = None;
    let mut limit = MAX_DISTANCE;
    let mut scratch = Vec::new();
    for (jinja, named) in index() {
        let known: Vec<char> = jinja.chars().collect();
        if let Some(d) = distance_below(&wanted, &known, limit, &mut scratch) {
            limit = d;
            best = Some(named);
            if d == 0 {
                break;
            }
        }
    }
    best
}

/// The Levenshtein distance between `a` and `b` (unit costs) if it is below `limit`, else `None`.
///
/// Only the diagonal band `|i - j| < limit` is computed, with every value capped at `limit`: a
/// cell outside the band is at least `limit` away, and capping commutes with the recurrence, so
/// the result is exact whenever it is below the limit. O(len · limit) instead of O(len²), which
/// matters for the multi-kilobyte templates of recent models.
fn distance_below(a: &[char], b: &[char], limit: usize, row: &mut Vec<usize>) -> Option<usize> {
    if limit == 0 {
        return None;
    }
    let (a, b) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if b.len() - a.len() >= limit {
        return None;
    }
    let band = limit - 1; // cells with |i - j| <= band are computed
    // row[j] = D(i, j) for the current i; cells outside the band hold `limit`.
    row.clear();
    row.extend((0..=b.len()).map(|j| j.min(limit)));
    for i in 1..=a.len() {
        let lo = i.saturating_sub(band).max(1);
        let hi = (i + band).min(b.len());
        // D(i, lo - 1): the left edge is either column 0 (= i) or outside the band.
        let mut diagonal = row[lo - 1];
        let mut left = if lo == 1 { i.min(limit) } else { limit };
        row[lo - 1] = left;
        let mut row_min = left;
        for j in lo..=hi {
            let up = row[j];
            let substitute = diagonal + usize::from(a[i - 1] != b[j - 1]);
            let value = substitute.min(up + 1).min(left + 1).min(limit);
            diagonal = up;
            row[j] = value;
            left = value;
            row_min = row_min.min(value);
        }
        if hi < b.len() {
            // The next cell is outside the band for this row and must read as `limit` later.
            row[hi + 1] = limit;
        }
        if row_min >= limit {
            return None;
        }
    }
    let d = row[b.len()];
    (d < limit).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook full-matrix distance, for checking the banded one.
    fn full_distance(a: &[char], b: &[char]) -> usize {
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut cur = vec![i; b.len() + 1];
            for j in 1..=b.len() {
                cur[j] = (prev[j - 1] + usize::from(a[i - 1] != b[j - 1]))
                    .min(prev[j] + 1)
                    .min(cur[j - 1] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    }

    proptest::proptest! {
        #[test]
        fn banded_distance_is_exact_below_the_limit(
            a in "[ab{}%\u{e9}]{0,40}",
            b in "[ab{}%\u{e9}]{0,40}",
            limit in 0usize..45,
        ) {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            let exact = full_distance(&a, &b);
            let got = distance_below(&a, &b, limit, &mut Vec::new());
            proptest::prop_assert_eq!(got, (exact < limit).then_some(exact));
        }
    }

    #[test]
    fn every_index_entry_maps_to_a_vendored_template() {
        let index = index();
        assert_eq!(index.len(), INDEX.matches("\"name\"").count());
        for (_, t) in index {
            assert!(!t.template.is_empty(), "{}", t.name);
            assert!(t.params.as_ref().unwrap().starts_with(b"{\"stop\":"));
        }
    }

    #[test]
    fn ollamas_named_template_fixtures_match() {
        // Ollama's own table of Hugging Face chat templates and the names they must map to.
        let fixtures = include_str!("ollama/testdata/templates.jsonl");
        let mut count = 0;
        for line in fixtures.lines().filter(|l| !l.trim().is_empty()) {
            let map: std::collections::BTreeMap<String, String> =
                serde_json::from_str(line).unwrap();
            for (name, jinja) in map {
                let found = detect(&jinja).map(|t| t.name);
                assert_eq!(found, Some(name.as_str()), "{jinja:?}");
                count += 1;
            }
        }
        assert!(count >= 30, "only {count} fixtures");
    }

    #[test]
    fn the_closest_entry_wins_over_other_near_ones() {
        // Several index entries are within 100 edits of others with a different name (zephyr's
        // and granite's are 70 apart); one edit away from an entry must still pick that entry.
        for (jinja, named) in index() {
            let edited = format!("{jinja}\u{2603}");
            assert_eq!(
                detect(&edited).map(|t| t.name),
                Some(named.name),
                "{jinja:?}"
            );
        }
    }

    #[test]
    fn distant_templates_are_not_matched() {
        assert!(detect("").is_none());
        assert!(detect("{{ messages }}").is_none());
        // 100 edits away from a known template is too far; 99 is close enough.
        let (jinja, named) = &index()[0];
        let mut far = jinja.clone();
        far.push_str(&"\u{2603}".repeat(100));
        assert!(detect(&far).is_none());
        let mut near = jinja.clone();
        near.push_str(&"\u{2603}".repeat(99));
        let found = detect(&near).unwrap();
        assert_eq!(found.name, named.name);
    }
}
