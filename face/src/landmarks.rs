//! The 68-point layout of the iBUG 300-W annotation (as dlib, OpenFace and menpo use it), and the
//! measures of a shape the rest of the crate needs. Indices are 0-based; "left" and "right" are
//! as seen in the image (the subject's right eye is the image's left eye).

/// 68 landmarks, `[x, y]` in pixels of the analysed image.
pub type Landmarks = [[f32; 2]; 68];

/// Jaw line, image left to right: 0..=16.
pub const JAW: std::ops::RangeInclusive<usize> = 0..=16;
/// Eyebrows: 17..=21 (image left), 22..=26 (image right).
pub const BROW_LEFT: std::ops::RangeInclusive<usize> = 17..=21;
pub const BROW_RIGHT: std::ops::RangeInclusive<usize> = 22..=26;
/// Nose bridge 27..=30 (30 is the tip), nostrils 31..=35.
pub const NOSE_BRIDGE: std::ops::RangeInclusive<usize> = 27..=30;
pub const NOSE_TIP: usize = 30;
/// Eyes, six points each, clockwise from the outer corner: 36..=41 (image left), 42..=47.
pub const EYE_LEFT: std::ops::RangeInclusive<usize> = 36..=41;
pub const EYE_RIGHT: std::ops::RangeInclusive<usize> = 42..=47;
/// Outer eye corners (the inter-ocular distance of the 300-W error measure).
pub const EYE_LEFT_OUTER: usize = 36;
pub const EYE_RIGHT_OUTER: usize = 45;
/// Mouth: outer lip 48..=59 (48 and 54 the corners, 51 top centre, 57 bottom centre), inner
/// lip 60..=67 (62 top centre, 66 bottom centre).
pub const MOUTH_LEFT: usize = 48;
pub const MOUTH_RIGHT: usize = 54;
pub const INNER_LIP_TOP: usize = 62;
pub const INNER_LIP_BOTTOM: usize = 66;
pub const CHIN: usize = 8;

/// The mean of the points in `range`.
pub fn centroid(lm: &Landmarks, range: std::ops::RangeInclusive<usize>) -> [f32; 2] {
    let n = range.clone().count() as f32;
    let (sx, sy) = range.fold((0.0, 0.0), |(sx, sy), i| (sx + lm[i][0], sy + lm[i][1]));
    [sx / n, sy / n]
}

pub fn distance(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Distance between the outer eye corners: the normaliser of the 300-W landmark error.
pub fn inter_ocular(lm: &Landmarks) -> f32 {
    distance(lm[EYE_LEFT_OUTER], lm[EYE_RIGHT_OUTER])
}

/// Distance between the eye centres (the centroids of the six points of each eye).
pub fn inter_pupil(lm: &Landmarks) -> f32 {
    distance(centroid(lm, EYE_LEFT), centroid(lm, EYE_RIGHT))
}

/// The tight box around all points: `[left, top, right, bottom]`.
pub fn bounds(lm: &Landmarks) -> [f32; 4] {
    lm.iter().fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |b, p| {
        [b[0].min(p[0]), b[1].min(p[1]), b[2].max(p[0]), b[3].max(p[1])]
    })
}

/// Mean point-to-point distance between two shapes, divided by `norm` (the normalised mean
/// error of the landmark literature when `norm` is the ground truth's inter-ocular distance).
pub fn mean_error(a: &Landmarks, b: &Landmarks, norm: f32) -> f32 {
    let sum: f32 = a.iter().zip(b).map(|(p, q)| distance(*p, *q)).sum();
    sum / 68.0 / norm
}

/// Reads a `.pts` annotation (the iBUG/menpo text format: `version: 1`, `n_points: 68`, `{`, one
/// `x y` line per point, `}`), 1-based pixel coordinates as the format defines, returned
/// 0-based.
pub fn parse_pts(text: &str) -> Result<Landmarks, String> {
    let body = text
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(inner, _)| inner)
        .ok_or("no { … } block")?;
    let mut lm = [[0.0f32; 2]; 68];
    let mut n = 0;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut it = line.split_whitespace().map(str::parse::<f32>);
        let (Some(Ok(x)), Some(Ok(y)), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!("bad point line {line:?}"));
        };
        if n == 68 {
            return Err("more than 68 points".into());
        }
        lm[n] = [x - 1.0, y - 1.0];
        n += 1;
    }
    if n != 68 {
        return Err(format!("{n} points, expected 68"));
    }
    Ok(lm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pts_files_parse_and_refuse_what_is_not_68_points() {
        let mut text = String::from("version: 1\nn_points: 68\n{\n");
        for i in 0..68 {
            text += &format!("{}.5 {}\n", i + 1, 2 * i + 1);
        }
        text += "}\n";
        let lm = parse_pts(&text).unwrap();
        assert_eq!(lm[0], [0.5, 0.0]);
        assert_eq!(lm[67], [67.5, 134.0]);
        assert!(parse_pts("version: 1\n{\n1 2\n}").unwrap_err().contains("1 points"));
        assert!(parse_pts("no braces").is_err());
        assert!(parse_pts("{\n1 x\n}").is_err());
    }

    #[test]
    fn measures_of_a_shape() {
        let mut lm = [[0.0f32; 2]; 68];
        lm[EYE_LEFT_OUTER] = [10.0, 20.0];
        lm[EYE_RIGHT_OUTER] = [40.0, 60.0];
        assert_eq!(inter_ocular(&lm), 50.0);
        assert_eq!(bounds(&lm), [0.0, 0.0, 40.0, 60.0]);
        let mut moved = lm;
        for p in moved.iter_mut() {
            p[0] += 5.0;
        }
        assert!((mean_error(&lm, &moved, 50.0) - 0.1).abs() < 1e-6);
    }
}
