//! The plate reader's floor on the project's golden set (issue #20): exact reads of
//! single vehicle crops at character heights of 20 px and more, votes over five reads,
//! and the negatives (vehicles without plates, opencv-doc's motion-blurred plate).
//! The set is drawn from a fixed seed, so the same pictures are read every run; the
//! full figures come from `varta bench plates` (bench/README.md).

use std::path::PathBuf;
use varta_bench::plates::{evaluate, Args, HEIGHTS, MIN_CONFIDENCE};

#[test]
fn golden_set_meets_the_floor() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let args = Args {
        models: root.join(varta_detect::ocr::default_dir()),
        images: root.join(".cache/media/images"),
        ..Args::default_set()
    };
    let r = evaluate(&args).expect("the golden set runs (./scripts/setup fetches models and pictures)");
    println!("{}", r.table());
    assert_eq!(r.single.len(), HEIGHTS.len());
    assert!(r.single.iter().all(|h| h.plates == 40), "{:?}", r.single);
    assert!(r.single_rate_20px_up >= 0.90, "single reads at >= 20 px: {:.3}", r.single_rate_20px_up);
    assert!(r.voted_rate_20px_up >= 0.97, "voted reads at >= 20 px: {:.3}", r.voted_rate_20px_up);
    assert_eq!(r.negative_watchlist_alerts, 0, "{:?}", r.negative_confident_reads);
    assert!(
        !r.negative_confident_reads.iter().any(|n| n.starts_with("licenseplate_motion.jpg")),
        "a confident read (>= {MIN_CONFIDENCE}) on the motion-blurred plate: {:?}",
        r.negative_confident_reads
    );
}
