//! Make N jittered copies of the paper's pair in its `pair_N/<run>/` layout, to measure
//! `starvation aggregate` at the paper's scale (100 pairs).
//!
//! cargo run --release --example synthesize_pairs -- <paper-exports/pair_1> <out-dir> [N]

use starvation::results::promjson::{Sample, read_export};
use starvation::results::stats::SplitMix64;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: synthesize_pairs <paper-exports/pair_1> <out-dir> [pairs=100]".into());
    }
    let src = PathBuf::from(&args[1]);
    let out = PathBuf::from(&args[2]);
    let n: u32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&src)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    let mut rng = SplitMix64::new(2025);
    let mut u = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    for k in 1..=n {
        for run in &runs {
            let shift = k as f64 * 3600.0 + (u() * 4.0).round();
            let scale = 0.9 + 0.2 * u();
            let dst = out
                .join(format!("pair_{k}"))
                .join(run.file_name().ok_or("bad run dir")?);
            std::fs::create_dir_all(&dst)?;
            for e in std::fs::read_dir(run)?.flatten() {
                let p = e.path();
                if !p.to_string_lossy().ends_with("_export.json") {
                    continue;
                }
                jitter(&p, &dst, shift, scale, &mut u)?;
            }
        }
    }
    println!("wrote {n} pairs to {}", out.display());
    Ok(())
}

fn jitter(
    src: &Path,
    dst: &Path,
    shift: f64,
    scale: f64,
    u: &mut impl FnMut() -> f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut resp = read_export(src)?;
    let scale_event = src.ends_with("Scale_event_export.json");
    if let Some(data) = resp.data.as_mut() {
        for s in &mut data.result {
            // Drop up to two trailing samples, so run lengths differ.
            let keep = s.values.len().saturating_sub((u() * 3.0) as usize).max(1);
            s.values.truncate(keep);
            for p in &mut s.values {
                let v = if scale_event {
                    p.value
                } else {
                    p.value * (scale + 0.1 * (u() - 0.5))
                };
                let ts = p.ts
                    + shift
                    + if scale_event {
                        (u() * 20.0).round()
                    } else {
                        0.0
                    };
                *p = Sample::new(ts, v);
            }
        }
    }
    let name = src.file_name().ok_or("bad file")?;
    std::fs::write(dst.join(name), serde_json::to_vec_pretty(&resp)?)?;
    Ok(())
}
