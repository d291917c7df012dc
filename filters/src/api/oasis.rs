//! OASIS, the offset-adjusted similarity score of two participants' smile series (Henneberg,
//! Eghtebas, De Candido, Kunze and Ward, "Detecting an Offset-Adjusted Similarity Score Based on
//! Duchenne Smiles", CHI EA '23), computed as SynthARium's `SYNC_SCORE_GF` computes it, to the
//! last bit where the arithmetic allows (tested against vectors produced by SynthARium's own
//! code with pyts 0.14.1: `filters/tests/data/oasis_golden.json`).
//!
//! **The symbols** ([`bag_of_words`]): every window of [`OasisParams::window`] consecutive
//! samples (step 1) becomes a word of [`OasisParams::word`] letters over an alphabet of
//! [`OasisParams::bins`] letters (`0` = `a`, the lowest): the window is standardised (mean 0,
//! standard deviation 1), shortened by piecewise aggregate approximation (means of equal,
//! possibly overlapping segments) and each mean gets the letter of its bin, the bins being
//! equal parts of the range between the smallest and the largest mean *of that word*. A window
//! that is nearly flat (standard deviation below [`OasisParams::std_threshold`]) is not
//! standardised: its raw segment means get their bins from the range of the *whole series*.
//!
//! **The score** ([`oasis`]): participant A's first word against B's words at offsets
//! `j = 0 .. window`; each offset scores `(1 - j / window) * shape * value`, where `shape` is 1
//! minus the mean letter distance (in alphabet steps, over `bins - 1`) and `value` is 1 minus
//! the difference of the two windows' mean absolute values (A's first window, B's window at
//! `j`), divided once more by `window` (as SynthARium does). The score is the best offset; 0 when
//! either first window's mean absolute value is at most [`OasisParams::energy_threshold`] (no
//! smile to compare). A copy of A lagged by `j` samples (normalised alike, smiling in both first
//! windows) scores at least `1 - j / window`, the offset coefficient of its exact match, and
//! exactly that when no earlier offset looks alike.
//!
//! **The aggregate** ([`sync_score`]): both series min-max normalised to 0..1 (a constant
//! positive series becomes all ones, a constant zero or negative one stays as it is), the words
//! of the two normalised series concatenated (so a flat window's bins span both), A's words are
//! those of windows inside A and B's those inside B, and the mean of OASIS A→B and B→A.
//!
//! Nothing here panics: unusable input gives the documented result (an empty [`Words`], a score
//! of `NaN` for "no score", never a made-up number).

/// The parameters of the symbols and the score. [`Default`] is SynthARium's: windows of 8
/// samples, words of 4 letters, 3 letters, pyts's flatness threshold 0.01 and an energy
/// threshold of 0.1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OasisParams {
    /// Samples per window (and the number of offsets OASIS tries).
    pub window: usize,
    /// Letters per word (1 ..= `window`).
    pub word: usize,
    /// Letters in the alphabet (2 ..= 26).
    pub bins: usize,
    /// A window whose standard deviation is below this is flat: not standardised, binned on
    /// the whole series' range.
    pub std_threshold: f64,
    /// Both first windows' mean absolute value must exceed this for a score above 0.
    pub energy_threshold: f64,
}

impl Default for OasisParams {
    fn default() -> Self {
        Self { window: 8, word: 4, bins: 3, std_threshold: 0.01, energy_threshold: 0.1 }
    }
}

impl OasisParams {
    /// The shortest series [`sync_score_with`] scores: `2 * window - 1` (15 by default), so that
    /// B has a word at every offset.
    pub fn min_len(&self) -> usize {
        (2 * self.window).saturating_sub(1)
    }

    /// Whether these parameters describe a computation: `1 <= word <= window`,
    /// `2 <= bins <= 26`, finite thresholds.
    pub fn usable(&self) -> bool {
        self.window >= 1
            && (1..=self.window).contains(&self.word)
            && (2..=26).contains(&self.bins)
            && self.std_threshold.is_finite()
            && self.energy_threshold.is_finite()
    }
}

/// The words of a series, one per window, in window order; each word is `word` letters, a
/// letter being a bin index (`0` = `a`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Words {
    word: usize,
    letters: Vec<u8>,
}

impl Words {
    /// How many words.
    pub fn len(&self) -> usize {
        self.letters.len().checked_div(self.word).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    /// Word `i` (the window starting at sample `i`).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.letters.get(i * self.word..(i + 1) * self.word)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.letters.chunks_exact(self.word.max(1))
    }

    /// The words as pyts writes them (`"acba"`: `a` is the lowest bin).
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|w| w.iter().map(|&l| char::from(b'a' + l)).collect()).collect()
    }
}

/// The words of every window of `x` (see the module documentation). Empty when `x` is shorter
/// than a window, holds a value that is not finite, or `p` is not [usable](OasisParams::usable).
pub fn bag_of_words(x: &[f64], p: &OasisParams) -> Words {
    let mut words = Words { word: p.word, letters: Vec::new() };
    if !p.usable() || x.len() < p.window || x.iter().any(|v| !v.is_finite()) {
        return words;
    }
    let (lo, hi) = x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let mut flat_edges = Vec::with_capacity(p.bins - 1);
    uniform_edges(lo, hi, p.bins, &mut flat_edges);
    let segments = segments(p.window, p.word);
    let (mut z, mut means, mut edges) = (vec![0.0; p.window], vec![0.0; p.word], Vec::with_capacity(p.bins - 1));
    words.letters.reserve((x.len() - p.window + 1) * p.word);
    for w in x.windows(p.window) {
        let edges = if std_dev(w) < p.std_threshold {
            segment_means(w, &segments, &mut means);
            &flat_edges
        } else {
            standardise(w, &mut z);
            segment_means(&z, &segments, &mut means);
            let (lo, hi) = means.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            uniform_edges(lo, hi, p.bins, &mut edges);
            &edges
        };
        // The letter is the number of edges below the value (an edge equal to it does not count).
        words.letters.extend(means.iter().map(|&m| edges.iter().filter(|&&e| e < m).count() as u8));
    }
    words
}

/// OASIS of A against B: A's first word `word_a` against B's words at offsets
/// `0 .. p.window` (`words_b.get(j)`: the window of B starting at sample `j`), with the
/// energies of A's first window of `a` and of B's windows of `b` (see the module documentation).
/// 0 when either first window's energy is not above the threshold (or is `NaN`); offsets
/// beyond `words_b` or beyond `b` count as missing (no word: no score at that offset; missing
/// samples: no energy). `NaN` when `p` is not usable.
pub fn oasis(word_a: &[u8], a: &[f64], words_b: &Words, b: &[f64], p: &OasisParams) -> f64 {
    if !p.usable() {
        return f64::NAN;
    }
    let n = p.window;
    let (energy_a, energy_b) = (energy(a, n, 0), energy(b, n, 0));
    let mut score = 0.0;
    if !(energy_a > p.energy_threshold && energy_b > p.energy_threshold) {
        return score;
    }
    for j in 0..n {
        let coefficient = 1.0 - j as f64 / n as f64;
        if score >= coefficient {
            break;
        }
        let Some(word_b) = words_b.get(j) else { break };
        let shape = 1.0 - word_distance(word_a, word_b, p.bins);
        let value = 1.0 - (energy_a - energy(b, n, j)).abs() / n as f64;
        score = f64::max(score, coefficient * shape * value);
    }
    score
}

/// SynthARium's synchrony score of two aligned smile series with its parameters: the mean of
/// OASIS A→B and B→A over the normalised series. `NaN` (no score) when either series is
/// shorter than [`OasisParams::min_len`] (15) or holds a value that is not finite.
pub fn sync_score(a: &[f64], b: &[f64]) -> f64 {
    sync_score_with(a, b, &OasisParams::default())
}

/// [`sync_score`] with other parameters (`NaN` also when they are not usable).
pub fn sync_score_with(a: &[f64], b: &[f64], p: &OasisParams) -> f64 {
    directions(a, b, p).map_or(f64::NAN, |(ab, ba)| (ab + ba) / 2.0)
}

/// OASIS A→B and B→A as [`sync_score_with`] computes them; `None` where it gives `NaN`.
pub fn directions(a: &[f64], b: &[f64], p: &OasisParams) -> Option<(f64, f64)> {
    let finite = |x: &[f64]| x.len() >= p.min_len() && x.iter().all(|v| v.is_finite());
    if !p.usable() || !finite(a) || !finite(b) {
        return None;
    }
    let (a, b) = (normalise(a), normalise(b));
    // Finite values whose range overflows normalise to NaN: no score.
    if !finite(&a) || !finite(&b) {
        return None;
    }
    let both: Vec<f64> = a.iter().chain(&b).copied().collect();
    let words = bag_of_words(&both, p);
    // A's words: windows inside A; B's: windows starting at B's first sample.
    let split = |from: usize, to: usize| Words {
        word: p.word,
        letters: words.letters.get(from * p.word..to * p.word).unwrap_or_default().to_vec(),
    };
    let (words_a, words_b) = (split(0, a.len() + 1 - p.window), split(a.len(), words.len()));
    let first = |w: &Words| w.get(0).map(<[u8]>::to_vec).unwrap_or_default();
    let ab = oasis(&first(&words_a), &a, &words_b, &b, p);
    let ba = oasis(&first(&words_b), &b, &words_a, &a, p);
    Some((ab, ba))
}

/// SynthARium's min-max normalisation to 0..1; a constant series becomes all ones if it is
/// positive and stays as it is otherwise.
pub fn normalise(x: &[f64]) -> Vec<f64> {
    let (lo, hi) = x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    if lo == hi {
        // Every value is `lo`: a positive one divided by itself, rounded down, is 1.
        return x.iter().map(|&v| if lo > 0.0 { (v / lo).floor() } else { v }).collect();
    }
    x.iter().map(|&v| (v - lo) / (hi - lo)).collect()
}

/// The mean absolute value of the `n` samples of `x` from `offset` on; samples beyond the end
/// count as 0 (the divisor stays `n`).
fn energy(x: &[f64], n: usize, offset: usize) -> f64 {
    x.iter().skip(offset).take(n).map(|v| v.abs()).fold(0.0, |s, v| s + v) / n as f64
}

/// The mean distance of two words' letters in alphabet steps, each over `bins - 1` (0: the
/// same word, 1: every letter at the other end); 1 for an empty word.
fn word_distance(a: &[u8], b: &[u8], bins: usize) -> f64 {
    if a.is_empty() {
        return 1.0;
    }
    let sum = a.iter().zip(b).fold(0.0, |s, (&x, &y)| s + x.abs_diff(y) as f64 / (bins - 1) as f64);
    sum / a.len() as f64
}

/// `bins - 1` inner edges splitting `lo..hi` into equal bins (`lo + k * (hi - lo) / bins`).
fn uniform_edges(lo: f64, hi: f64, bins: usize, out: &mut Vec<f64>) {
    out.clear();
    let step = (hi - lo) / bins as f64;
    out.extend((1..bins).map(|k| k as f64 * step + lo));
}

/// The `(start, end)` of each of the `word` segments of a `window`-sample window: segments of
/// `ceil(window / word)` samples, overlapping evenly where that is more than the window (pyts's
/// overlapping piecewise aggregate approximation). `word == window`: one sample each.
fn segments(window: usize, word: usize) -> Vec<(usize, usize)> {
    let size = window.div_ceil(word);
    let surplus = word * size - window;
    (0..word)
        .map(|k| {
            // How far segment k moves back: surplus spread evenly (k * surplus / (word - 1),
            // rounded down), the last one exactly by the whole surplus.
            let back = match word {
                1 => 0,
                _ if k == word - 1 => surplus,
                _ => (k as f64 * (surplus as f64 / (word - 1) as f64)) as usize,
            };
            (k * size - back, (k + 1) * size - back)
        })
        .collect()
}

fn segment_means(x: &[f64], segments: &[(usize, usize)], out: &mut [f64]) {
    for (m, &(s, e)) in out.iter_mut().zip(segments) {
        *m = x[s..e].iter().fold(0.0, |a, v| a + v) / (e - s) as f64;
    }
}

/// Sum in the order numpy adds a short contiguous row (blocks of eight partial sums, combined
/// pairwise), so that the standardisation rounds as pyts's does.
fn sum(x: &[f64]) -> f64 {
    if x.len() < 8 {
        return x.iter().fold(0.0, |s, v| s + v);
    }
    let mut r = [0.0; 8];
    r.copy_from_slice(&x[..8]);
    let blocks = x.len() - x.len() % 8;
    for chunk in x[8..blocks].chunks_exact(8) {
        for (r, v) in r.iter_mut().zip(chunk) {
            *r += v;
        }
    }
    let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for v in &x[blocks..] {
        s += v;
    }
    s
}

/// The population standard deviation (numpy's `std`).
fn std_dev(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = sum(x) / n;
    let sq: Vec<f64> = x.iter().map(|v| (v - mean) * (v - mean)).collect();
    (sum(&sq) / n).sqrt()
}

/// `x` scaled to mean 0 and standard deviation 1 into `out` (scikit-learn's standard scaler:
/// two-pass variance with its correction term; a (near) zero deviation scales by 1).
fn standardise(x: &[f64], out: &mut [f64]) {
    let n = x.len() as f64;
    let mean = sum(x) / n;
    for (o, v) in out.iter_mut().zip(x) {
        *o = v - mean;
    }
    let correction = sum(out);
    let sq: Vec<f64> = out.iter().map(|d| d * d).collect();
    let var = (sum(&sq) - correction * correction / n) / n;
    let constant = var <= n * f64::EPSILON * var + (n * mean * f64::EPSILON).powi(2);
    let scale = if constant { 1.0 } else { var.sqrt() };
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v - mean) / scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const GOLDEN: &str = include_str!("../../tests/data/oasis_golden.json");

    fn num(v: &Value) -> f64 {
        v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a number as a string: {v}"))
    }

    fn nums(v: &Value) -> Vec<f64> {
        v.as_array().expect("an array").iter().map(num).collect()
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array().expect("an array").iter().map(|s| s.as_str().expect("a word").to_owned()).collect()
    }

    fn golden() -> Value {
        serde_json::from_str(GOLDEN).expect("the golden file parses")
    }

    /// Our symbols, OASIS in both directions and the aggregate equal what SynthARium's own code
    /// (with pyts 0.14.1) gives for every golden input.
    #[test]
    fn equals_synthariums_outputs_on_the_golden_vectors() {
        let g = golden();
        let p = OasisParams::default();
        let cases = g["sync"].as_array().unwrap();
        assert!(cases.len() >= 90);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let (a, b) = (nums(&c["a"]), nums(&c["b"]));
            let both: Vec<f64> = normalise(&a).into_iter().chain(normalise(&b)).collect();
            assert_eq!(bag_of_words(&both, &p).to_strings(), strings(&c["words"]), "{name}: words");
            let (ab, ba) = directions(&a, &b, &p).unwrap_or_else(|| panic!("{name}: scored"));
            for (what, got, want) in [("a->b", ab, num(&c["ab"])), ("b->a", ba, num(&c["ba"]))] {
                assert!((got - want).abs() <= 1e-9, "{name} {what}: {got} vs {want}");
            }
            let (got, want) = (sync_score(&a, &b), num(&c["score"]));
            assert!((got - want).abs() <= 1e-9, "{name}: {got} vs {want}");
        }
        for c in g["bag_of_words"].as_array().unwrap() {
            let x = nums(&c["x"]);
            assert_eq!(bag_of_words(&x, &p).to_strings(), strings(&c["words"]), "{}", c["name"]);
        }
    }

    fn golden_case(name: &str) -> (Vec<f64>, Vec<f64>) {
        let g = golden();
        let c = g["sync"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}"));
        (nums(&c["a"]), nums(&c["b"]))
    }

    #[test]
    fn identical_series_score_one() {
        for name in ["identical_bursts", "identical_random", "ramp_same", "constant_positive"] {
            let (a, _) = golden_case(name);
            assert_eq!(sync_score(&a, &a), 1.0, "{name}");
        }
    }

    /// The published behaviour on lagged copies: a single smile that B repeats `j` samples later
    /// scores exactly the offset coefficient `1 - j/8` (A→B), decreasing in `j`, until the smile
    /// leaves B's first window (no energy there: 0). Any exact copy lagged by `j` scores at least
    /// its coefficient, since the matching offset alone gives that much.
    #[test]
    fn a_lagged_copy_scores_its_offset_coefficient() {
        let p = OasisParams::default();
        let mut last = f64::INFINITY;
        for j in 0..8 {
            let (a, b) = golden_case(&format!("single_smile_lagged_{j}"));
            let (ab, _) = directions(&a, &b, &p).unwrap();
            let want = if j < 7 { 1.0 - j as f64 / 8.0 } else { 0.0 };
            assert!((ab - want).abs() < 1e-6, "lag {j}: {ab}");
            assert!(ab < last, "lag {j}: {ab} not below {last}");
            last = ab;
        }
        // The lower bound, on random smiles whose lowest and highest values lie where every
        // lagged copy sees them (so that A and B normalise alike).
        for seed in 0..50 {
            let mut rng = crate::testing::Rng::new(seed);
            let mut s: Vec<f64> = (0..22).map(|_| rng.range(0.5, 4.5)).collect();
            (s[9], s[12]) = (0.0, 5.0);
            for j in 0..8 {
                let (ab, _) = directions(&s[7..22], &s[7 - j..22 - j], &p).unwrap();
                assert!(ab >= 1.0 - j as f64 / 8.0 - 1e-12 && ab <= 1.0, "seed {seed} lag {j}: {ab}");
            }
        }
    }

    #[test]
    fn below_the_energy_threshold_scores_zero() {
        let p = OasisParams::default();
        // A smiles only after its first window: nothing to compare.
        let (a, b) = golden_case("low_energy_start");
        assert!(energy(&normalise(&a), 8, 0) <= p.energy_threshold);
        assert_eq!(sync_score(&a, &b), 0.0);
        assert_eq!(sync_score(&[0.0; 15], &[0.0; 15]), 0.0, "no smile at all");
        assert_eq!(sync_score(&[2.5; 15], &[0.0; 15]), 0.0, "one smiles, the other does not");
        // Just above the threshold in both: a score again.
        let mut x = [0.0; 15];
        x[0] = 0.81;
        x[14] = 1.0;
        assert!(sync_score(&x, &x) > 0.0);
        x[0] = 0.8; // energy exactly 0.1: not above
        assert_eq!(sync_score(&x, &x), 0.0);
    }

    #[test]
    fn unusable_input_gives_documented_results_without_panicking() {
        let p = OasisParams::default();
        let ok = [1.0, 0.0, 2.0, 3.0, 0.5, 0.0, 1.0, 4.0, 0.0, 2.0, 1.0, 0.0, 3.0, 1.0, 0.0];
        assert!(sync_score(&ok, &ok) == 1.0);
        for (a, b) in [(&[][..], &ok[..]), (&ok[..14], &ok[..]), (&ok[..], &[][..])] {
            assert!(sync_score(a, b).is_nan(), "too short: {} and {}", a.len(), b.len());
        }
        let mut bad = ok;
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            bad[3] = v;
            assert!(sync_score(&bad, &ok).is_nan() && sync_score(&ok, &bad).is_nan());
            assert!(bag_of_words(&bad, &p).is_empty());
        }
        let mut huge = ok.map(|v| v * 4e307);
        huge[0] = -1e308;
        assert!(sync_score(&huge, &ok).is_nan(), "a range beyond f64 normalises to NaN: no score");
        assert_eq!(bag_of_words(&huge, &p).len(), 8);
        assert!(bag_of_words(&ok[..7], &p).is_empty(), "shorter than a window");
        assert_eq!(bag_of_words(&ok[..8], &p).len(), 1);
        for q in [
            OasisParams { window: 0, ..p },
            OasisParams { word: 0, ..p },
            OasisParams { word: 9, ..p },
            OasisParams { bins: 1, ..p },
            OasisParams { bins: 27, ..p },
            OasisParams { std_threshold: f64::NAN, ..p },
            OasisParams { energy_threshold: f64::INFINITY, ..p },
        ] {
            assert!(!q.usable(), "{q:?}");
            assert!(bag_of_words(&ok, &q).is_empty() && sync_score_with(&ok, &ok, &q).is_nan());
            assert!(oasis(&[0, 1], &ok, &Words::default(), &ok, &q).is_nan());
        }
        // OASIS with too few words or samples of B: the missing offsets do not count.
        let words = bag_of_words(&ok, &p);
        let w0 = words.get(0).unwrap().to_vec();
        let short = Words { word: 4, letters: words.letters[4..8].to_vec() };
        assert!((0.0..=1.0).contains(&oasis(&w0, &ok, &short, &ok[..3], &p)));
        assert_eq!(oasis(&[], &ok, &words, &ok, &p), 0.0, "an empty word is as far as can be");
        assert_eq!(normalise(&[]), Vec::<f64>::new());
        assert_eq!(Words::default().len(), 0);
    }

    /// Other parameters follow pyts's rules: a word as long as the window takes the samples
    /// themselves; uneven segments overlap evenly.
    #[test]
    fn segments_follow_the_overlapping_approximation() {
        assert_eq!(segments(8, 4), [(0, 2), (2, 4), (4, 6), (6, 8)]);
        assert_eq!(segments(8, 8), (0..8).map(|k| (k, k + 1)).collect::<Vec<_>>());
        // 10 samples in 4 segments of 3: 2 surplus, moved back 0, 0, 1, 2.
        assert_eq!(segments(10, 4), [(0, 3), (3, 6), (5, 8), (7, 10)]);
        assert_eq!(segments(5, 1), [(0, 5)]);
        let p = OasisParams { window: 4, word: 4, bins: 2, ..OasisParams::default() };
        assert_eq!(bag_of_words(&[0.0, 3.0, 1.0, 2.0, 9.0], &p).to_strings(), ["abab", "aaab"]);
    }
}
