//! The PP-OCRv6 tiny reader on rendered plates (tests/fixtures/plates/README.md):
//! detection finds the plate's text, recognition reads it, and the plate module
//! normalises it.

use std::path::PathBuf;
use varta_core::plate;
use varta_detect::ocr::{default_dir, TextReader};
use varta_detect::runtime::{library_path, RuntimeOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reader() -> TextReader {
    let opts = RuntimeOptions { library: root().join(library_path()), ..RuntimeOptions::cpu(1) };
    TextReader::load(&opts, &root().join(default_dir())).unwrap()
}

#[test]
fn a_rendered_plate_is_found_and_read() {
    let mut reader = reader();
    // (file, where the plate is: x1 y1 x2 y2)
    for (file, plate_at) in [
        ("ax1234bi.png", [0, 0, 426, 116]),
        ("ax1234bi-on-grey.png", [110, 200, 536, 316]),
        ("ax1234bi-small.png", [0, 0, 171, 46]),
    ] {
        let img = image::open(root().join("tests/fixtures/plates").join(file)).unwrap().to_rgb8();
        let lines = reader.read(&img).unwrap();
        assert_eq!(lines.len(), 1, "{file}: {lines:?}");
        let l = &lines[0];
        assert_eq!(plate::normalise(&l.text), "AX1234BI", "{file}: {l:?}");
        assert_eq!(plate::display(&plate::normalise(&l.text)), "АХ 1234 ВІ");
        assert!(l.confidence > 0.9, "{file}: {l:?}");
        let [x1, y1, x2, y2] = l.rect;
        assert!(x1 >= plate_at[0] && y1 >= plate_at[1] && x2 <= plate_at[2] && y2 <= plate_at[3], "{file}: {l:?}");
    }
}

#[test]
fn a_blank_picture_has_no_text() {
    let grey = image::RgbImage::from_pixel(320, 240, image::Rgb([106, 122, 138]));
    assert!(reader().read(&grey).unwrap().is_empty());
}

#[test]
fn a_motion_blurred_plate_gives_no_confident_plate() {
    // Debian opencv-doc's licenseplate_motion.jpg (fetched by ./scripts/setup): a plate
    // smeared beyond reading, one of issue #20's negatives.
    let img = image::open(root().join(".cache/media/images/licenseplate_motion.jpg")).unwrap().to_rgb8();
    let lines = reader().read(&img).unwrap();
    let confident: Vec<_> =
        lines.iter().filter(|l| plate::is_plate_like(&plate::normalise(&l.text)) && l.confidence > 0.5).collect();
    assert!(confident.is_empty(), "{confident:?}");
}
