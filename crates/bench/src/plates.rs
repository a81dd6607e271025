//! `varta bench plates`: the plate reader on the project's golden set (issue #20).
//!
//! The set is made, not downloaded: Ukrainian plates drawn by `varta_sim::plates` (DejaVu
//! Sans Condensed Bold) at character heights of 12–40 px, turned by up to ±15°, put on
//! vehicle crops from Debian's test pictures (node-opencv's `car1.jpg` and `car2.jpg`,
//! the pick-up in darknet's `dog.jpg`, each also mirrored), dimmed (contrast 0.6–1,
//! brightness −30…+10), blurred (Gaussian, σ 0–1.3 px) and passed through JPEG
//! (quality 40–95). The same seed gives the same set, picture
//! for picture. Negatives are the same vehicle crops without a plate, the other test
//! pictures, and opencv-doc's motion-blurred `licenseplate_motion.jpg`.
//!
//! Reported: the exact-read rate by character height (the most confident plate read on
//! the crop equals the truth), the rate after voting over five reads of the same plate
//! (`varta_core::plate::vote`, as a track's best crops are voted), the reads on the
//! negatives that reach the confidence a read is stored at, the watchlist alerts they
//! would raise against a list of every plate of the set, and the reader's time per crop.

use anyhow::{Context, Result};
use image::{imageops, RgbImage};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use varta_core::plate;
use varta_detect::ocr::TextReader;
use varta_detect::runtime::RuntimeOptions;
use varta_sim::plates::{jpeg_round_trip, place, random_plate, PlateFont, DEFAULT_FONT};

/// Character heights of the golden set, in pixels of the vehicle crop.
pub const HEIGHTS: [u32; 6] = [12, 16, 20, 24, 32, 40];
/// Heights at which the voting figure is measured (the targets start at 20 px).
pub const VOTING_HEIGHTS: [u32; 4] = [20, 24, 32, 40];
/// Reads voted per plate (a track's best crops).
pub const READS_PER_VOTE: usize = 5;
/// A read at least this confident is stored and checked against watchlists
/// (`[plates] min_confidence`'s default).
pub const MIN_CONFIDENCE: f32 = 0.8;

/// `varta bench plates`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Directory of the OCR models (made by ./scripts/setup).
    #[arg(long, default_value_os_t = varta_detect::ocr::default_dir())]
    pub models: PathBuf,
    /// Directory of the test pictures (made by ./scripts/setup).
    #[arg(long, default_value = ".cache/media/images")]
    pub images: PathBuf,
    /// Seed of the set: the same seed draws the same plates, angles, blur and quality.
    #[arg(long, default_value_t = 20)]
    pub seed: u64,
    /// Plates per character height (single reads).
    #[arg(long, default_value_t = 40)]
    pub per_height: usize,
    /// Plates per voting height, each read five times.
    #[arg(long, default_value_t = 12)]
    pub votes_per_height: usize,
    /// Shorter side the text detector scales a crop to (`[detect.plates] detector_side`).
    #[arg(long, default_value_t = 256)]
    pub det_side: u32,
    /// Writes each picture of the set as a PNG here (to look at).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Writes the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Args {
    /// The default set on the default paths.
    pub fn default_set() -> Args {
        Args {
            models: varta_detect::ocr::default_dir(),
            images: PathBuf::from(".cache/media/images"),
            seed: 20,
            per_height: 40,
            votes_per_height: 12,
            det_side: 256,
            dump: None,
            json: None,
        }
    }
}

/// One picture of the set: a vehicle crop carrying a plate.
pub struct Sample {
    /// The plate's text, normalised Latin.
    pub truth: String,
    /// Character height, pixels.
    pub char_px: u32,
    /// Turn, degrees (±15).
    pub angle: f32,
    /// Gaussian blur σ, pixels.
    pub blur: f32,
    /// JPEG quality the picture went through.
    pub quality: u8,
    /// Which vehicle crop.
    pub vehicle: &'static str,
    /// The picture.
    pub image: RgbImage,
}

/// Exact reads at one character height.
#[derive(Clone, Debug, Serialize)]
pub struct HeightRow {
    /// Character height, pixels.
    pub char_px: u32,
    /// Plates read (single pictures, or voted groups of five).
    pub plates: usize,
    /// Reads equal to the truth.
    pub exact: usize,
    /// `exact / plates`.
    pub rate: f64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct PlateAccuracy {
    /// Seed of the set.
    pub seed: u64,
    /// The text detector's shorter side, pixels.
    pub det_side: u32,
    /// Single reads by character height.
    pub single: Vec<HeightRow>,
    /// Exact-read rate of single reads at ≥ 20 px.
    pub single_rate_20px_up: f64,
    /// Votes over five reads by character height.
    pub voted: Vec<HeightRow>,
    /// Exact-read rate after voting at ≥ 20 px.
    pub voted_rate_20px_up: f64,
    /// Negative pictures read.
    pub negatives: usize,
    /// Plates read on negatives at ≥ [`MIN_CONFIDENCE`], with the picture's name.
    pub negative_confident_reads: Vec<String>,
    /// Reads on negatives that a watchlist of every plate of the set would alert on.
    pub negative_watchlist_alerts: usize,
    /// Mean reader time per vehicle crop, milliseconds (one thread).
    pub ms_per_crop_mean: f64,
    /// 95th percentile of the same.
    pub ms_per_crop_p95: f64,
}

impl PlateAccuracy {
    /// A printable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "seed {}, detector side {} px\nchar px   single exact        voted (5 reads) exact\n",
            self.seed, self.det_side
        );
        for h in HEIGHTS {
            let one = self.single.iter().find(|r| r.char_px == h);
            let vote = self.voted.iter().find(|r| r.char_px == h);
            let cell = |r: Option<&HeightRow>| {
                r.map_or("-".to_owned(), |r| format!("{:>3}/{:<3} {:>5.1}%", r.exact, r.plates, r.rate * 100.0))
            };
            s += &format!("{h:>7}   {:<20} {}\n", cell(one), cell(vote));
        }
        s += &format!(
            ">= 20 px  single {:.1}%  voted {:.1}%\nnegatives {}: confident reads {} {:?}, watchlist alerts {}\nreader {:.1} ms per crop (mean), {:.1} ms (p95), one thread\n",
            self.single_rate_20px_up * 100.0,
            self.voted_rate_20px_up * 100.0,
            self.negatives,
            self.negative_confident_reads.len(),
            self.negative_confident_reads,
            self.negative_watchlist_alerts,
            self.ms_per_crop_mean,
            self.ms_per_crop_p95,
        );
        s
    }
}

/// Vehicle crops of the set: `(name, picture)`, from the pictures setup fetched into
/// `images` (x1 y1 x2 y2 in the original pictures, chosen by eye), each also mirrored.
///
/// Errors: a picture that is missing (run `./scripts/setup`).
pub fn vehicles(images: &Path) -> Result<Vec<(&'static str, RgbImage)>> {
    const CROPS: [(&str, &str, [u32; 4]); 3] = [
        ("car1", "car1.jpg", [50, 196, 956, 464]),
        ("car2", "car2.jpg", [146, 357, 1383, 776]),
        ("pickup", "dog.jpg", [465, 60, 675, 150]),
    ];
    let mut out = Vec::new();
    for (name, file, [x1, y1, x2, y2]) in CROPS {
        let path = images.join(file);
        let img = image::open(&path).with_context(|| format!("reading {} (run ./scripts/setup)", path.display()))?;
        let crop = imageops::crop_imm(&img.to_rgb8(), x1, y1, x2 - x1, y2 - y1).to_image();
        out.push((name, imageops::flip_horizontal(&crop)));
        out.push((name, crop));
    }
    Ok(out)
}

/// One picture: `truth` drawn at `char_px` on a random vehicle crop, scaled so the
/// plate is a fifth to a third of the crop's width, turned, blurred and compressed.
pub fn sample(
    font: &PlateFont,
    vehicles: &[(&'static str, RgbImage)],
    rng: &mut StdRng,
    truth: &str,
    char_px: u32,
) -> Result<Sample> {
    let (vehicle, base) = &vehicles[rng.random_range(0..vehicles.len())];
    let plate = font.render(truth, char_px as f32);
    let share = rng.random_range(0.2..0.34);
    let w = (plate.width() as f32 / share).round() as u32;
    // Never narrower than 3 plate heights tall: a side view is wider than a vehicle crop.
    let h = ((w as f32 * base.height() as f32 / base.width() as f32) as u32).max(plate.height() * 3);
    let mut image = imageops::resize(base, w, h, imageops::FilterType::Triangle);
    let angle = rng.random_range(-15.0..15.0f32);
    let (cx, cy) = (w as f32 * rng.random_range(0.35..0.65), h as f32 * rng.random_range(0.5..0.75));
    place(&mut image, &plate, cx, cy, angle);
    // Light: contrast 0.6–1 around mid-grey and a shift of −30…+10 (dusk, glare).
    let (contrast, shift) = (rng.random_range(0.6..1.0f32), rng.random_range(-30.0..10.0f32));
    for p in image.pixels_mut() {
        for v in &mut p.0 {
            *v = ((*v as f32 - 128.0) * contrast + 128.0 + shift).round().clamp(0.0, 255.0) as u8;
        }
    }
    let blur = rng.random_range(0.0..1.3f32);
    if blur > 0.1 {
        image = imageops::blur(&image, blur);
    }
    let quality = rng.random_range(40..=95u8);
    let image = jpeg_round_trip(&image, quality).map_err(anyhow::Error::msg)?;
    Ok(Sample { truth: truth.to_owned(), char_px, angle, blur, quality, vehicle, image })
}

/// The single-read set: `per_height` plates at each of [`HEIGHTS`].
pub fn single_set(
    font: &PlateFont,
    vehicles: &[(&'static str, RgbImage)],
    seed: u64,
    per_height: usize,
) -> Result<Vec<Sample>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for h in HEIGHTS {
        for _ in 0..per_height {
            let truth = random_plate(&mut rng);
            out.push(sample(font, vehicles, &mut rng, &truth, h)?);
        }
    }
    Ok(out)
}

/// The voting set: `per_height` plates at each of [`VOTING_HEIGHTS`], each drawn
/// [`READS_PER_VOTE`] times (another crop, turn, blur and quality each time).
pub fn voting_set(
    font: &PlateFont,
    vehicles: &[(&'static str, RgbImage)],
    seed: u64,
    per_height: usize,
) -> Result<Vec<Vec<Sample>>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x005e_ed0f_u64);
    let mut out = Vec::new();
    for h in VOTING_HEIGHTS {
        for _ in 0..per_height {
            let truth = random_plate(&mut rng);
            let group =
                (0..READS_PER_VOTE).map(|_| sample(font, vehicles, &mut rng, &truth, h)).collect::<Result<_>>()?;
            out.push(group);
        }
    }
    Ok(out)
}

/// Runs the reader over the set and the negatives.
///
/// Errors: missing models, font or pictures (run `./scripts/setup`), or an inference
/// failure.
pub fn evaluate(args: &Args) -> Result<PlateAccuracy> {
    let font = PlateFont::load(DEFAULT_FONT).map_err(anyhow::Error::msg)?;
    let vehicles = vehicles(&args.images)?;
    let mut reader = TextReader::load(&RuntimeOptions::cpu(1), &args.models)?.with_det_side(args.det_side);
    let mut times = Vec::new();
    let mut read = |img: &RgbImage| -> Result<Option<plate::Read>> {
        let t0 = Instant::now();
        let best = reader.plates(img)?.into_iter().next();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        Ok(best.map(|p| plate::Read { text: p.text, confidence: p.confidence as f64 }))
    };
    let dump = |name: String, img: &RgbImage| -> Result<()> {
        if let Some(dir) = &args.dump {
            std::fs::create_dir_all(dir)?;
            img.save(dir.join(name))?;
        }
        Ok(())
    };

    let singles = single_set(&font, &vehicles, args.seed, args.per_height)?;
    let mut watchlist: Vec<String> = Vec::new();
    let mut single = Vec::new();
    for h in HEIGHTS {
        let (mut plates, mut exact) = (0, 0);
        for (i, s) in singles.iter().enumerate().filter(|(_, s)| s.char_px == h) {
            dump(format!("single-{i:03}-{}px-{}.png", s.char_px, s.truth), &s.image)?;
            plates += 1;
            let got = read(&s.image)?;
            exact += usize::from(got.as_ref().is_some_and(|r| r.text == s.truth));
            watchlist.push(s.truth.clone());
        }
        single.push(row(h, plates, exact));
    }

    let groups = voting_set(&font, &vehicles, args.seed, args.votes_per_height)?;
    let mut voted = Vec::new();
    for h in VOTING_HEIGHTS {
        let (mut plates, mut exact) = (0, 0);
        for (g, group) in groups.iter().enumerate().filter(|(_, g)| g[0].char_px == h) {
            let mut reads = Vec::new();
            for (k, s) in group.iter().enumerate() {
                dump(format!("vote-{g:03}-{k}-{}px-{}.png", s.char_px, s.truth), &s.image)?;
                reads.extend(read(&s.image)?);
            }
            plates += 1;
            exact += usize::from(plate::vote(&reads).is_some_and(|v| v.text == group[0].truth));
            watchlist.push(group[0].truth.clone());
        }
        voted.push(row(h, plates, exact));
    }

    // Negatives: the crops without plates at three sizes, and whole test pictures.
    let mut negatives: Vec<(String, RgbImage)> = Vec::new();
    for (i, (name, v)) in vehicles.iter().enumerate() {
        for width in [320u32, 640, 960] {
            let h = (width as f32 * v.height() as f32 / v.width() as f32).round() as u32;
            negatives.push((
                format!("{name}-{i}-{width}"),
                imageops::resize(v, width, h.max(1), imageops::FilterType::Triangle),
            ));
        }
    }
    for file in ["licenseplate_motion.jpg", "dog.jpg", "person.jpg", "horses.jpg", "kite.jpg", "car1.jpg", "car2.jpg"] {
        let path = args.images.join(file);
        let img = image::open(&path).with_context(|| format!("reading {} (run ./scripts/setup)", path.display()))?;
        negatives.push((file.to_owned(), img.to_rgb8()));
    }
    let (mut confident, mut alerts) = (Vec::new(), 0);
    for (name, img) in &negatives {
        dump(format!("negative-{name}.png"), img)?;
        let reads = reader.plates(img)?;
        for r in reads.iter().filter(|r| r.confidence >= MIN_CONFIDENCE) {
            confident.push(format!("{name}: {} ({:.2})", r.text, r.confidence));
            alerts += watchlist.iter().filter(|w| plate::matches(&r.text, w).is_some()).count();
        }
    }

    times.sort_by(f64::total_cmp);
    let rate_of = |rows: &[HeightRow]| {
        let (p, e) = rows.iter().filter(|r| r.char_px >= 20).fold((0, 0), |(p, e), r| (p + r.plates, e + r.exact));
        if p == 0 {
            0.0
        } else {
            e as f64 / p as f64
        }
    };
    Ok(PlateAccuracy {
        seed: args.seed,
        det_side: args.det_side,
        single_rate_20px_up: rate_of(&single),
        voted_rate_20px_up: rate_of(&voted),
        single,
        voted,
        negatives: negatives.len(),
        negative_confident_reads: confident,
        negative_watchlist_alerts: alerts,
        ms_per_crop_mean: times.iter().sum::<f64>() / times.len().max(1) as f64,
        ms_per_crop_p95: times.get(times.len() * 95 / 100).copied().unwrap_or(0.0),
    })
}

fn row(char_px: u32, plates: usize, exact: usize) -> HeightRow {
    HeightRow { char_px, plates, exact, rate: if plates == 0 { 0.0 } else { exact as f64 / plates as f64 } }
}

/// `varta bench plates`: prints the table, writes `--json`.
pub fn run(args: &Args) -> Result<()> {
    let r = evaluate(args)?;
    println!("varta bench plates\n{}", r.table());
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    Ok(())
}

/// `varta plate-scene`.
#[derive(clap::Args, Clone, Debug)]
pub struct SceneArgs {
    /// The clip to write (MP4, H.264).
    #[arg(long)]
    pub out: PathBuf,
    /// Plates, one vehicle each, in order (Latin or Cyrillic).
    #[arg(long, value_delimiter = ',', default_value = "AX1234BI,BI0001AA,KA7702CT")]
    pub plates: Vec<String>,
    /// Directory of the test pictures (made by ./scripts/setup).
    #[arg(long, default_value = ".cache/media/images")]
    pub images: PathBuf,
}

/// Writes the clip and `OUT.truth.json` (`[{"plate", "enters_s", "leaves_s"}]`,
/// seconds from the clip's start); prints the ground truth.
pub fn scene(args: SceneArgs) -> Result<()> {
    gstreamer::init()?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let plates: Vec<String> = args.plates.iter().map(|p| plate::normalise(p)).collect();
    let truth = varta_sim::plates::write_scene(&args.out, &args.images, &plates).map_err(anyhow::Error::msg)?;
    let json: Vec<_> = truth
        .iter()
        .map(|p| serde_json::json!({"plate": p.plate, "enters_s": p.enters_s, "leaves_s": p.leaves_s}))
        .collect();
    let text = serde_json::to_string_pretty(&json)?;
    std::fs::write(args.out.with_extension("truth.json"), &text)?;
    println!("{text}");
    Ok(())
}
