//! Head pose from 2-D landmarks: the rigid transform that best projects a generic 3-D face
//! (six points: nose tip, chin, outer eye corners, mouth corners; an average adult head, in
//! millimetres) onto the landmarks through a pinhole camera, fitted by damped Gauss-Newton on
//! the reprojection error. The camera is OpenFace's default when none is calibrated: focal
//! length 500 px at 640 px width (scaled with the width), principal point at the centre.
//!
//! Conventions as OpenFace's `pose_T*`/`pose_R*` columns: camera frame, x right, y down, z away
//! from the camera; translation in mm; rotation as Euler angles in radians with
//! `R = Rx(pitch) · Ry(yaw) · Rz(roll)`. A face looking straight at the camera is (0, 0, 0).
//! The generic model makes `Tz` (distance) an estimate within the spread of head sizes (±10 %).

use crate::landmarks::{Landmarks, CHIN, EYE_LEFT_OUTER, EYE_RIGHT_OUTER, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP};

/// Head pose: translation (mm) and rotation (radians).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pose {
    pub tx: f32,
    pub ty: f32,
    pub tz: f32,
    pub rx: f32,
    pub ry: f32,
    pub rz: f32,
}

/// The landmarks the fit uses and their place on the generic head (mm; x right, y down, z away
/// from the camera, nose tip at the origin; outer eye corners 90 mm apart).
const MODEL: [(usize, [f64; 3]); 6] = [
    (NOSE_TIP, [0.0, 0.0, 0.0]),
    (CHIN, [0.0, 66.0, 13.0]),
    (EYE_LEFT_OUTER, [-45.0, -34.0, 27.0]),
    (EYE_RIGHT_OUTER, [45.0, -34.0, 27.0]),
    (MOUTH_LEFT, [-30.0, 30.0, 25.0]),
    (MOUTH_RIGHT, [30.0, 30.0, 25.0]),
];

/// The pinhole camera the pose is measured with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Camera {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl Camera {
    /// OpenFace's default for an uncalibrated camera of this image size.
    pub fn default_for(width: usize, height: usize) -> Self {
        let f = 500.0 * width as f64 / 640.0;
        Camera { fx: f, fy: f, cx: width as f64 / 2.0, cy: height as f64 / 2.0 }
    }

    fn project(&self, p: [f64; 3]) -> [f64; 2] {
        let z = p[2].max(1e-3);
        [self.fx * p[0] / z + self.cx, self.fy * p[1] / z + self.cy]
    }
}

type Mat3 = [[f64; 3]; 3];

/// Rotation matrix of a rotation vector (Rodrigues).
fn rodrigues(w: [f64; 3]) -> Mat3 {
    let theta = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt();
    if theta < 1e-12 {
        return [[1.0, -w[2], w[1]], [w[2], 1.0, -w[0]], [-w[1], w[0], 1.0]];
    }
    let k = [w[0] / theta, w[1] / theta, w[2] / theta];
    let (s, c) = theta.sin_cos();
    let v = 1.0 - c;
    [
        [c + k[0] * k[0] * v, k[0] * k[1] * v - k[2] * s, k[0] * k[2] * v + k[1] * s],
        [k[1] * k[0] * v + k[2] * s, c + k[1] * k[1] * v, k[1] * k[2] * v - k[0] * s],
        [k[2] * k[0] * v - k[1] * s, k[2] * k[1] * v + k[0] * s, c + k[2] * k[2] * v],
    ]
}

fn apply(r: &Mat3, t: [f64; 3], p: [f64; 3]) -> [f64; 3] {
    [
        r[0][0] * p[0] + r[0][1] * p[1] + r[0][2] * p[2] + t[0],
        r[1][0] * p[0] + r[1][1] * p[1] + r[1][2] * p[2] + t[1],
        r[2][0] * p[0] + r[2][1] * p[1] + r[2][2] * p[2] + t[2],
    ]
}

/// Euler angles (pitch, yaw, roll) of `R = Rx · Ry · Rz`.
fn euler(r: &Mat3) -> [f64; 3] {
    let yaw = r[0][2].clamp(-1.0, 1.0).asin();
    let pitch = (-r[1][2]).atan2(r[2][2]);
    let roll = (-r[0][1]).atan2(r[0][0]);
    [pitch, yaw, roll]
}

fn residuals(cam: &Camera, x: &[f64; 6], obs: &[[f64; 2]; 6], out: &mut [f64; 12]) {
    let r = rodrigues([x[0], x[1], x[2]]);
    for (i, (_, p)) in MODEL.iter().enumerate() {
        let q = cam.project(apply(&r, [x[3], x[4], x[5]], *p));
        out[2 * i] = q[0] - obs[i][0];
        out[2 * i + 1] = q[1] - obs[i][1];
    }
}

/// Solves the 6x6 system `a · x = b` by Gaussian elimination with partial pivoting; `None` when
/// singular.
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..6 {
            let f = a[row][col] / pivot_row[col];
            for (v, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *v -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 6];
    for row in (0..6).rev() {
        let s: f64 = (row + 1..6).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// The pose of the face whose landmarks are `lm`, seen by `cam`; `None` if the landmarks are
/// degenerate (coincident eye corners) or the fit does not converge to a face in front of the
/// camera.
pub fn estimate(lm: &Landmarks, cam: &Camera) -> Option<Pose> {
    let obs: [[f64; 2]; 6] = std::array::from_fn(|i| [lm[MODEL[i].0][0] as f64, lm[MODEL[i].0][1] as f64]);
    let eyes = ((obs[3][0] - obs[2][0]).powi(2) + (obs[3][1] - obs[2][1]).powi(2)).sqrt();
    if !eyes.is_finite() || eyes < 2.0 {
        return None;
    }
    // Start facing the camera at the distance the eye-corner span implies, nose on its ray.
    let tz = cam.fx * 90.0 / eyes;
    let mut x = [0.0, 0.0, 0.0, (obs[0][0] - cam.cx) * tz / cam.fx, (obs[0][1] - cam.cy) * tz / cam.fy, tz];
    let mut res = [0.0; 12];
    residuals(cam, &x, &obs, &mut res);
    let mut cost: f64 = res.iter().map(|r| r * r).sum();
    let mut lambda = 1e-3;
    for _ in 0..30 {
        // Forward-difference Jacobian (12 x 6).
        let mut jac = [[0.0; 6]; 12];
        for k in 0..6 {
            let h = if k < 3 { 1e-6 } else { 1e-4 * x[5].abs().max(1.0) };
            let mut xp = x;
            xp[k] += h;
            let mut rp = [0.0; 12];
            residuals(cam, &xp, &obs, &mut rp);
            for i in 0..12 {
                jac[i][k] = (rp[i] - res[i]) / h;
            }
        }
        let mut jtj = [[0.0; 6]; 6];
        let mut jtr = [0.0; 6];
        for i in 0..12 {
            for a in 0..6 {
                jtr[a] -= jac[i][a] * res[i];
                for b in 0..6 {
                    jtj[a][b] += jac[i][a] * jac[i][b];
                }
            }
        }
        let mut improved = false;
        for _ in 0..8 {
            let mut damped = jtj;
            for (a, row) in damped.iter_mut().enumerate() {
                row[a] *= 1.0 + lambda;
            }
            let Some(step) = solve6(damped, jtr) else { break };
            let cand: [f64; 6] = std::array::from_fn(|k| x[k] + step[k]);
            let mut rc = [0.0; 12];
            residuals(cam, &cand, &obs, &mut rc);
            let c: f64 = rc.iter().map(|r| r * r).sum();
            if c.is_finite() && c < cost {
                x = cand;
                res = rc;
                let gain = cost - c;
                cost = c;
                lambda = (lambda * 0.3).max(1e-9);
                improved = gain > 1e-9 * cost.max(1.0);
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    if x.iter().any(|v| !v.is_finite()) || x[5] <= 0.0 {
        return None;
    }
    let [pitch, yaw, roll] = euler(&rodrigues([x[0], x[1], x[2]]));
    Some(Pose { tx: x[3] as f32, ty: x[4] as f32, tz: x[5] as f32, rx: pitch as f32, ry: yaw as f32, rz: roll as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Projects the generic model with a known pose and reads the pose back.
    fn roundtrip(pitch: f64, yaw: f64, roll: f64, t: [f64; 3]) -> Pose {
        let cam = Camera::default_for(640, 480);
        // R = Rx · Ry · Rz from the Euler angles.
        let rx = rodrigues([pitch, 0.0, 0.0]);
        let ry = rodrigues([0.0, yaw, 0.0]);
        let rz = rodrigues([0.0, 0.0, roll]);
        let mul = |a: &Mat3, b: &Mat3| -> Mat3 {
            std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
        };
        let r = mul(&mul(&rx, &ry), &rz);
        let mut lm = [[0.0f32; 2]; 68];
        for (i, p) in MODEL {
            let q = cam.project(apply(&r, t, p));
            lm[i] = [q[0] as f32, q[1] as f32];
        }
        estimate(&lm, &cam).expect("a pose")
    }

    #[test]
    fn a_known_pose_is_read_back() {
        for &(p, y, r) in &[(0.0, 0.0, 0.0), (0.2, -0.3, 0.1), (-0.25, 0.4, -0.2), (0.1, 0.6, 0.3)] {
            let t = [30.0, -20.0, 600.0];
            let pose = roundtrip(p, y, r, t);
            assert!((pose.rx as f64 - p).abs() < 1e-3, "pitch {p}: {pose:?}");
            assert!((pose.ry as f64 - y).abs() < 1e-3, "yaw {y}: {pose:?}");
            assert!((pose.rz as f64 - r).abs() < 1e-3, "roll {r}: {pose:?}");
            assert!((pose.tz as f64 - t[2]).abs() < 1.0 && (pose.tx as f64 - t[0]).abs() < 0.5, "{pose:?}");
        }
    }

    #[test]
    fn degenerate_landmarks_give_no_pose() {
        let lm = [[100.0f32; 2]; 68];
        assert_eq!(estimate(&lm, &Camera::default_for(640, 480)), None);
        let mut nan = [[0.0f32; 2]; 68];
        nan[EYE_LEFT_OUTER] = [f32::NAN, 0.0];
        assert_eq!(estimate(&nan, &Camera::default_for(640, 480)), None);
    }
}
