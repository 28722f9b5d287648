//! The inference runtime with the installed GTCRN model: device fallback,
//! and a model that keeps producing finite audio whatever it is fed.

use manifold::pipelines::enhance_gtcrn::{GtcrnEnhancer, HOP};
use manifold::pipelines::HopModel;
use manifold::runtime::onnx::{open_session, Device};
use manifold::runtime::store;

fn gtcrn_path() -> std::path::PathBuf {
    store::find_model("gtcrn").expect("run `cargo xtask models gtcrn` (or `cargo xtask test`) first").file_path()
}

#[test]
fn cuda_request_without_a_gpu_falls_back_to_cpu_and_says_so() {
    let s = open_session(&gtcrn_path(), Device::Cuda).expect("falls back instead of failing");
    let gpu_present = s.device_note.starts_with("GPU");
    assert!(gpu_present || s.device_note.starts_with("CPU (CUDA unavailable"), "{}", s.device_note);
    let cpu = open_session(&gtcrn_path(), Device::Cpu).unwrap();
    assert_eq!(cpu.device_note, "CPU");
}

#[test]
fn gtcrn_output_stays_finite_under_extreme_input_and_recovers() {
    for channels in [1usize, 2] {
        let mut m = GtcrnEnhancer::load(&gtcrn_path(), channels, Device::Cpu).unwrap();
        let mut out = vec![0.0f32; HOP * channels];
        // Full-scale (clamped) square waves and silence, alternating.
        for k in 0..200 {
            let v = if (k / 10) % 2 == 0 { 8.0 } else { 0.0 };
            let input: Vec<f32> = (0..HOP * channels).map(|i| if i % 32 < 16 { v } else { -v }).collect();
            m.process_hop(&input, &mut out);
            assert!(out.iter().all(|x| x.is_finite()), "hop {k}: non-finite output");
        }
        // Then ordinary low-level noise: output stays bounded and finite.
        let mut s = 7u32;
        for _ in 0..100 {
            let input: Vec<f32> = (0..HOP * channels)
                .map(|_| {
                    s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                    ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1
                })
                .collect();
            m.process_hop(&input, &mut out);
            assert!(out.iter().all(|x| x.is_finite() && x.abs() < 1.0));
        }
    }
}
