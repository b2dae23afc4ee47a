//! Speller cost per amount, prompt library load time, and the memory held by
//! the shared prompt frames.
//!
//! `cargo bench --bench say` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ivr12333::domain::Fen;
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::say::{self, SayOptions};

fn prompts_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"))
}

fn speller(c: &mut Criterion) {
    let opts = SayOptions::default();
    // typical balances, zeros inside and across groups, and the largest
    let amounts = [
        Fen(1_234_567),
        Fen(200_008),
        Fen(10_001_000_101),
        Fen(-3520),
        Fen(999_999_999_999_999),
    ];
    c.bench_function("say::amount (mixed, per amount)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % amounts.len();
            say::amount(black_box(amounts[i]), &opts)
        })
    });
    c.bench_function("say::amount 12345.67 + to_text", |b| {
        b.iter(|| say::to_text(&say::amount(black_box(Fen(1_234_567)), &opts).unwrap()))
    });
    c.bench_function("say::id_readback", |b| {
        b.iter(|| say::id_readback(black_box("11010519491231002X")))
    });
}

fn library(c: &mut Criterion) {
    let lib = PromptLibrary::load(prompts_dir()).expect("prompt library");
    let frames: usize = lib
        .ids()
        .filter_map(|id| lib.get(id))
        .map(|c| c.frame_count())
        .sum();
    println!(
        "prompt library: {} prompts, {} frames ({:.1} s of audio), {} bytes held (PCM + PCMU + PCMA)",
        lib.ids().count(),
        frames,
        frames as f64 * 0.02,
        lib.memory_bytes()
    );
    let segs = say::amount(Fen(1_234_567), &SayOptions::default()).unwrap();
    c.bench_function("PromptLibrary::render 12345.67", |b| {
        b.iter(|| lib.render(black_box(&segs)).unwrap())
    });
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("PromptLibrary::load (whole library)", |b| {
        b.iter(|| PromptLibrary::load(black_box(prompts_dir())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, speller, library);
criterion_main!(benches);
