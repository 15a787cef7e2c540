//! The decode-step hot path allocates nothing: a counting global allocator
//! watches `process` on single rows (this test binary runs only this test, so
//! no other thread allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tracemark_core::{Key, SchemeConfig, SeenContexts};

struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn single_row_processing_allocates_nothing_proportional_to_the_vocabulary() {
    let vocab = 128_256;
    let key = Key::from_bytes([8; 32]);
    let mut row: Vec<f32> = (0..vocab).map(|i| (i % 97) as f32 * 0.1).collect();
    let history: Vec<u32> = (0..64).collect();
    for (config, budget) in [
        ("kgw:gamma=0.25,delta=2,context=lefthash:1", 0),
        ("kgw:gamma=0.25,delta=2,context=minhash:4", 0),
        ("kgw:gamma=0.25,delta=2,context=selfhash:4", 0),
        ("gumbel:temperature=1,context=lefthash:4", 0),
        // Tournament keeps its k candidates: O(k), not O(V).
        ("tournament:layers=30,top_k=40,temperature=1,context=lefthash:4", 4096),
    ] {
        let scheme = config
            .parse::<SchemeConfig>()
            .expect("config")
            .build(&key, vocab)
            .expect("scheme");
        scheme.process(&history, &mut row).expect("warm-up");
        let before = BYTES.load(Ordering::Relaxed);
        for step in 0..16u32 {
            let h = [step, step + 1, step + 2, step + 3];
            scheme.process(&h, &mut row).expect("process");
            row.iter_mut().for_each(|x| {
                if !x.is_finite() {
                    *x = 0.0;
                }
            });
        }
        let per_step = (BYTES.load(Ordering::Relaxed) - before) / 16;
        assert!(per_step <= budget, "{config}: {per_step} bytes allocated per step");
    }
    // With repeated-context memory the only allocation is the memory's own growth.
    let kgw = "kgw:gamma=0.25,delta=2,context=lefthash:1"
        .parse::<SchemeConfig>()
        .expect("c")
        .build(&key, vocab)
        .expect("s");
    let mut memory = SeenContexts::new();
    for step in 0..64u32 {
        kgw.process_with_memory(&[step], &mut row, &mut memory)
            .expect("process");
    }
    let before = BYTES.load(Ordering::Relaxed);
    kgw.process_with_memory(&[1], &mut row, &mut memory).expect("repeat");
    assert_eq!(BYTES.load(Ordering::Relaxed) - before, 0);
}
