//! The C ABI of `native/dlib_shim.cpp`, compiled twice (baseline and AVX2); `Shim` is the
//! table of whichever the CPU runs; and one system call, the huge-page hint for the shape
//! model's leaves ([`advise_huge_pages`]). Everything unsafe in the crate is in this file.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

use crate::Gray;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawRect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
    score: f64,
}

macro_rules! shim_table {
    ($name:ident, $detector_new:ident, $detector_clone:ident, $detector_free:ident, $detect:ident,
     $predictor_load:ident, $predictor_free:ident, $predictor_parts:ident, $predict:ident) => {
        mod $name {
            use super::*;
            extern "C" {
                pub fn $detector_new(err: *mut c_char, len: usize) -> *mut c_void;
                pub fn $detector_clone(det: *const c_void) -> *mut c_void;
                pub fn $detector_free(det: *mut c_void);
                pub fn $detect(
                    det: *mut c_void,
                    data: *const u8,
                    rows: i64,
                    cols: i64,
                    stride: i64,
                    adjust: f64,
                    out: *mut RawRect,
                    max: i64,
                ) -> i64;
                pub fn $predictor_load(path: *const c_char, err: *mut c_char, len: usize) -> *mut c_void;
                pub fn $predictor_free(sp: *mut c_void);
                pub fn $predictor_parts(sp: *const c_void) -> i64;
                pub fn $predict(
                    sp: *const c_void,
                    data: *const u8,
                    rows: i64,
                    cols: i64,
                    stride: i64,
                    left: i64,
                    top: i64,
                    right: i64,
                    bottom: i64,
                    out: *mut f32,
                    max: i64,
                ) -> i64;
            }
            pub const TABLE: Shim = Shim {
                detector_new: $detector_new,
                detector_clone: $detector_clone,
                detector_free: $detector_free,
                detect: $detect,
                predictor_load: $predictor_load,
                predictor_free: $predictor_free,
                predictor_parts: $predictor_parts,
                predict: $predict,
            };
        }
    };
}

shim_table!(
    base,
    exf_base_detector_new,
    exf_base_detector_clone,
    exf_base_detector_free,
    exf_base_detect,
    exf_base_predictor_load,
    exf_base_predictor_free,
    exf_base_predictor_parts,
    exf_base_predict
);
#[cfg(face_avx2)]
shim_table!(
    avx2,
    exf_avx2_detector_new,
    exf_avx2_detector_clone,
    exf_avx2_detector_free,
    exf_avx2_detect,
    exf_avx2_predictor_load,
    exf_avx2_predictor_free,
    exf_avx2_predictor_parts,
    exf_avx2_predict
);

#[allow(clippy::type_complexity)]
struct Shim {
    detector_new: unsafe extern "C" fn(*mut c_char, usize) -> *mut c_void,
    detector_clone: unsafe extern "C" fn(*const c_void) -> *mut c_void,
    detector_free: unsafe extern "C" fn(*mut c_void),
    detect: unsafe extern "C" fn(*mut c_void, *const u8, i64, i64, i64, f64, *mut RawRect, i64) -> i64,
    predictor_load: unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> *mut c_void,
    predictor_free: unsafe extern "C" fn(*mut c_void),
    predictor_parts: unsafe extern "C" fn(*const c_void) -> i64,
    predict: unsafe extern "C" fn(*const c_void, *const u8, i64, i64, i64, i64, i64, i64, i64, *mut f32, i64) -> i64,
}

/// Which compiled variant runs here: "avx2" or "baseline".
pub fn variant() -> &'static str {
    if std::ptr::eq(shim(), &base::TABLE) {
        "baseline"
    } else {
        "avx2"
    }
}

fn shim() -> &'static Shim {
    static PICK: OnceLock<&'static Shim> = OnceLock::new();
    PICK.get_or_init(|| {
        #[cfg(face_avx2)]
        {
            if std::env::var_os("EXPHUB_FACE_BASELINE").is_none()
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return &avx2::TABLE;
            }
        }
        &base::TABLE
    })
}

/// Asks the kernel to back `mem` with huge pages where whole ones fit in it (Linux's
/// transparent huge pages in `madvise` mode, Debian's default; `always` needs no asking). For
/// large tables read at random, such as the shape model's leaves: far fewer TLB misses. Call it
/// before the memory is first written. A hint: nothing changes where it is not supported.
pub fn advise_huge_pages<T>(mem: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = mem.as_ptr() as usize;
        let end = start + std::mem::size_of_val(mem);
        let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if to > from {
            // SAFETY: MADV_HUGEPAGE changes neither contents nor permissions; the range lies
            // inside `mem`, which is mapped memory this process owns. The result is a hint's:
            // ignored.
            unsafe { libc::madvise(from as *mut c_void, to - from, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = mem;
}

/// A detected face: pixel box (inclusive corners, as dlib) and the detector's score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
    pub score: f64,
}

impl Detection {
    /// The box as the Rust shape model takes it.
    pub fn rect(&self) -> crate::ert::Rect {
        crate::ert::Rect {
            left: self.left as f32,
            top: self.top as f32,
            right: self.right as f32,
            bottom: self.bottom as f32,
        }
    }
}

fn error_text(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}

/// dlib's HOG frontal face detector (five filters: front, left, right, front rotated left and
/// right). Not shared between threads: each analyser owns one (a clone is cheap).
pub struct Detector(*mut c_void);

// SAFETY: the detector is a plain C++ object owned by this value; it is used by one thread at a
// time (`&mut self`), and dlib keeps no thread-local state in it.
unsafe impl Send for Detector {}

impl Detector {
    pub fn new() -> Result<Self, String> {
        let mut err = [0u8; 256];
        // SAFETY: err is a writable buffer of the given length.
        let p = unsafe { (shim().detector_new)(err.as_mut_ptr().cast(), err.len()) };
        if p.is_null() {
            Err(error_text(&err))
        } else {
            Ok(Detector(p))
        }
    }

    pub fn try_clone(&self) -> Option<Self> {
        // SAFETY: self.0 is a live detector.
        let p = unsafe { (shim().detector_clone)(self.0) };
        (!p.is_null()).then_some(Detector(p))
    }

    /// Faces in `img`, best first; `adjust` lowers (negative) or raises the score threshold.
    pub fn detect(&mut self, img: Gray<'_>, adjust: f64) -> Vec<Detection> {
        let mut out = [RawRect::default(); 16];
        // SAFETY: the image slice covers the image (`Gray::new` checked it); out has room for 16.
        let n = unsafe {
            (shim().detect)(
                self.0,
                img.data().as_ptr(),
                img.height() as i64,
                img.width() as i64,
                img.stride() as i64,
                adjust,
                out.as_mut_ptr(),
                out.len() as i64,
            )
        };
        out.iter()
            .take(n.clamp(0, out.len() as i64) as usize)
            .map(|r| Detection { left: r.left, top: r.top, right: r.right, bottom: r.bottom, score: r.score })
            .collect()
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        // SAFETY: self.0 came from detector_new/clone and is freed once.
        unsafe { (shim().detector_free)(self.0) }
    }
}

/// A dlib shape predictor loaded from a `.dat` file; shared read-only between threads.
pub struct Predictor {
    ptr: *mut c_void,
    parts: usize,
}

// SAFETY: dlib's shape_predictor::operator() is const and keeps no mutable state; the object
// is only freed by Drop, when no reference is left.
unsafe impl Send for Predictor {}
unsafe impl Sync for Predictor {}

impl Predictor {
    pub fn load(path: &Path) -> Result<Self, String> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| "path contains NUL".to_owned())?;
        let mut err = [0u8; 256];
        // SAFETY: c is NUL-terminated; err is a writable buffer of the given length.
        let p = unsafe { (shim().predictor_load)(c.as_ptr(), err.as_mut_ptr().cast(), err.len()) };
        if p.is_null() {
            return Err(error_text(&err));
        }
        // SAFETY: p is a live predictor.
        let parts = unsafe { (shim().predictor_parts)(p) }.max(0) as usize;
        Ok(Predictor { ptr: p, parts })
    }

    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Fits the shape into the box; `out` gets x0, y0, x1, y1, … Returns false on failure.
    pub fn predict(&self, img: Gray<'_>, b: [i64; 4], out: &mut [f32]) -> bool {
        // SAFETY: the image slice covers the image (`Gray::new` checked it); out's length bounds
        // the writes.
        let n = unsafe {
            (shim().predict)(
                self.ptr,
                img.data().as_ptr(),
                img.height() as i64,
                img.width() as i64,
                img.stride() as i64,
                b[0],
                b[1],
                b[2],
                b[3],
                out.as_mut_ptr(),
                (out.len() / 2) as i64,
            )
        };
        n >= 0 && n as usize * 2 <= out.len()
    }
}

impl Drop for Predictor {
    fn drop(&mut self) {
        // SAFETY: ptr came from predictor_load and is freed once.
        unsafe { (shim().predictor_free)(self.ptr) }
    }
}
