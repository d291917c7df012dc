// The only C++ in exphub: a thin C ABI over dlib's HOG face detector and its ensemble-of-
// regression-trees shape predictor (Debian's libdlib-dev). Images are 8-bit grey views of the
// caller's memory (the Y plane of an I420 frame), never copied. No exception crosses the ABI:
// each entry point catches and reports failure through its return value.
//
// Compiled twice by build.rs: once for the baseline x86-64 (SSE2) and once with AVX2, each
// with its own symbol prefix (EXF_PREFIX); the Rust side picks one at run time.
// Debian builds dlib with BLAS and LAPACK. Nothing here needs them (the shape predictor's
// additions are small vectors), so the templates compiled in this file use dlib's own kernels.
#include <dlib/config.h>
#undef DLIB_USE_BLAS
#undef DLIB_USE_LAPACK
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_processing/shape_predictor.h>
#include <dlib/serialize.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#ifndef EXF_PREFIX
#error "EXF_PREFIX must be defined"
#endif
#define EXF_CAT2(a, b) a##b
#define EXF_CAT(a, b) EXF_CAT2(a, b)
#define EXF(name) EXF_CAT(EXF_PREFIX, name)

// A borrowed grey image, plugged into dlib's generic image interface.
struct exf_gray {
    const unsigned char* data;
    long rows;
    long cols;
    long stride;
};

namespace dlib {
template <> struct image_traits<exf_gray> {
    typedef unsigned char pixel_type;
};
}  // namespace dlib

inline long num_rows(const exf_gray& g) { return g.rows; }
inline long num_columns(const exf_gray& g) { return g.cols; }
inline const void* image_data(const exf_gray& g) { return g.data; }
inline long width_step(const exf_gray& g) { return g.stride; }

extern "C" {

struct exf_rect {
    long left, top, right, bottom;
    double score;
};

// Copies an error text into buf (NUL-terminated, truncated to len).
static void exf_error(char* buf, size_t len, const char* what) {
    if (buf && len) {
        std::strncpy(buf, what, len - 1);
        buf[len - 1] = 0;
    }
}

void* EXF(detector_new)(char* err, size_t err_len) {
    try {
        return new dlib::frontal_face_detector(dlib::get_frontal_face_detector());
    } catch (const std::exception& e) {
        exf_error(err, err_len, e.what());
        return nullptr;
    }
}

void* EXF(detector_clone)(const void* det) {
    try {
        return new dlib::frontal_face_detector(*static_cast<const dlib::frontal_face_detector*>(det));
    } catch (...) {
        return nullptr;
    }
}

void EXF(detector_free)(void* det) { delete static_cast<dlib::frontal_face_detector*>(det); }

// Detects faces; writes up to max rectangles (best first) and returns how many were found in
// all (more than max when out was too small), or -1 on failure.
long EXF(detect)(void* det, const unsigned char* data, long rows, long cols, long stride, double adjust,
                 exf_rect* out, long max) {
    try {
        exf_gray img{data, rows, cols, stride};
        std::vector<std::pair<double, dlib::rectangle>> found;
        (*static_cast<dlib::frontal_face_detector*>(det))(img, found, adjust);
        std::sort(found.begin(), found.end(),
                  [](const auto& a, const auto& b) { return a.first > b.first; });
        for (long i = 0; i < (long)found.size() && i < max; i++) {
            const auto& r = found[i].second;
            out[i] = exf_rect{r.left(), r.top(), r.right(), r.bottom(), found[i].first};
        }
        return (long)found.size();
    } catch (...) {
        return -1;
    }
}

void* EXF(predictor_load)(const char* path, char* err, size_t err_len) {
    try {
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            exf_error(err, err_len, "cannot open the file");
            return nullptr;
        }
        auto* sp = new dlib::shape_predictor();
        try {
            dlib::deserialize(*sp, in);
        } catch (...) {
            delete sp;
            throw;
        }
        return sp;
    } catch (const std::exception& e) {
        exf_error(err, err_len, e.what());
        return nullptr;
    }
}

void EXF(predictor_free)(void* sp) { delete static_cast<dlib::shape_predictor*>(sp); }

long EXF(predictor_parts)(const void* sp) {
    return (long)static_cast<const dlib::shape_predictor*>(sp)->num_parts();
}

// Fits the shape inside the box; writes parts as x0,y0,x1,y1,... (2*max floats at most).
// Returns the number of parts, or -1 on failure.
long EXF(predict)(const void* sp, const unsigned char* data, long rows, long cols, long stride, long left,
                  long top, long right, long bottom, float* out, long max) {
    try {
        exf_gray img{data, rows, cols, stride};
        const auto& pred = *static_cast<const dlib::shape_predictor*>(sp);
        dlib::full_object_detection shape = pred(img, dlib::rectangle(left, top, right, bottom));
        long n = (long)shape.num_parts();
        for (long i = 0; i < n && i < max; i++) {
            out[2 * i] = (float)shape.part(i).x();
            out[2 * i + 1] = (float)shape.part(i).y();
        }
        return n;
    } catch (...) {
        return -1;
    }
}

}  // extern "C"
