//! Synthetic Ukrainian number plates (issue #20): rendered with a free font, placed on
//! vehicle pictures at an angle, degraded by blur and JPEG, for the plate golden set
//! (`varta bench plates`) and the simulator's vehicle scene.
//!
//! The plate follows the civil plate of ДСТУ 4278:2019 in proportions only: a white
//! field 520 × 112 mm with a black rim, the blue-and-yellow strip with "UA" on the left,
//! black characters about 0.6 of the plate's height, grouped `AA 1234 BB`. The font is
//! DejaVu Sans Condensed Bold (Debian `fonts-dejavu-core`, Bitstream Vera licence),
//! read from the system at run time, never shipped.

use ab_glyph::{point, Font, FontVec, PxScale, ScaleFont};
use image::{imageops, Rgb, RgbImage};
use rand::Rng;

/// Where Debian's `fonts-dejavu-core` installs the font used for plates.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf";

/// Plate width over plate height (520 mm / 112 mm).
const ASPECT: f32 = 520.0 / 112.0;
/// Character (cap) height over plate height.
const CHAR_SHARE: f32 = 0.6;
/// Character height plates are drawn at before being scaled to their size, in pixels:
/// drawing large and scaling down gives the soft edges a camera gives.
const DRAW_CHAR_PX: f32 = 64.0;

/// The plate font, loaded once.
pub struct PlateFont {
    font: FontVec,
}

impl PlateFont {
    /// Loads a TrueType font from `path` ([`DEFAULT_FONT`] on Debian).
    ///
    /// Errors: a message naming the file when it cannot be read or parsed (install
    /// `fonts-dejavu-core`; `./scripts/setup` does).
    pub fn load(path: &str) -> Result<PlateFont, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("plate font {path}: {e} (install fonts-dejavu-core)"))?;
        let font = FontVec::try_from_vec(bytes).map_err(|e| format!("plate font {path}: {e}"))?;
        Ok(PlateFont { font })
    }

    /// Draws `text` (normalised Latin, e.g. `AX1234BI`) as a plate whose characters are
    /// `char_px` pixels high; the picture is the whole plate (width ≈ 7.7 × `char_px`).
    /// Ukrainian civil plates are grouped `AX 1234 BI`, 1995 plates `12345 AA`; other
    /// text is drawn as given.
    pub fn render(&self, text: &str, char_px: f32) -> RgbImage {
        let big = self.render_at(text, DRAW_CHAR_PX);
        let scale = char_px / DRAW_CHAR_PX;
        let (w, h) = (
            ((big.width() as f32 * scale).round() as u32).max(4),
            ((big.height() as f32 * scale).round() as u32).max(2),
        );
        imageops::resize(&big, w, h, imageops::FilterType::Triangle)
    }

    fn render_at(&self, text: &str, char_px: f32) -> RgbImage {
        let plate_h = char_px / CHAR_SHARE;
        let (w, h) = ((plate_h * ASPECT).round() as u32, plate_h.round() as u32);
        let mut img = RgbImage::from_pixel(w, h, Rgb([245, 245, 240]));
        // Black rim, 2 % of the height.
        let rim = ((h as f32 * 0.04).round() as u32).max(1);
        for (x, y, p) in img.enumerate_pixels_mut() {
            if x < rim || y < rim || x >= w - rim || y >= h - rim {
                *p = Rgb([20, 20, 20]);
            }
        }
        // The strip: blue over yellow, 11 % of the width, with "UA" under it.
        let strip_w = (w as f32 * 0.11) as u32;
        for y in rim * 2..h - rim * 2 {
            for x in rim * 2..strip_w {
                let c = if y < h * 2 / 5 { Rgb([0, 87, 183]) } else { Rgb([20, 60, 160]) };
                let c = if (h * 2 / 5..h / 2).contains(&y) { Rgb([255, 215, 0]) } else { c };
                img.put_pixel(x, y, c);
            }
        }
        self.draw(&mut img, "UA", char_px * 0.28, strip_w as f32 / 2.0, h as f32 * 0.78, Rgb([250, 250, 250]));
        let grouped = group(text);
        let text_w = self.width(&grouped, char_px);
        let room = (w - strip_w) as f32;
        let size = if text_w > room * 0.92 { char_px * room * 0.92 / text_w } else { char_px };
        self.draw(
            &mut img,
            &grouped,
            size,
            strip_w as f32 + room / 2.0,
            h as f32 / 2.0 + size / 2.0,
            Rgb([15, 15, 15]),
        );
        img
    }

    /// The font scale whose capital letters are `cap_px` high.
    fn scale(&self, cap_px: f32) -> PxScale {
        let unit = self.font.as_scaled(PxScale::from(100.0));
        let cap = self
            .font
            .outline_glyph(unit.scaled_glyph('H'))
            .map(|g| g.px_bounds().height())
            .filter(|h| *h > 0.0)
            .unwrap_or(73.0);
        PxScale::from(100.0 * cap_px / cap)
    }

    fn width(&self, text: &str, cap_px: f32) -> f32 {
        let f = self.font.as_scaled(self.scale(cap_px));
        text.chars().map(|c| f.h_advance(f.glyph_id(c))).sum()
    }

    /// Draws `text` centred on `cx` with its baseline at `baseline`.
    fn draw(&self, img: &mut RgbImage, text: &str, cap_px: f32, cx: f32, baseline: f32, colour: Rgb<u8>) {
        let scale = self.scale(cap_px);
        let f = self.font.as_scaled(scale);
        let mut x = cx - self.width(text, cap_px) / 2.0;
        for c in text.chars() {
            let glyph = f.scaled_glyph(c);
            let advance = f.h_advance(glyph.id);
            let glyph = ab_glyph::Glyph { position: point(x, baseline), ..glyph };
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, cover| {
                    let (px, py) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                    if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                        let p = img.get_pixel_mut(px as u32, py as u32);
                        for (c, v) in p.0.iter_mut().zip(colour.0) {
                            *c = (*c as f32 * (1.0 - cover) + v as f32 * cover).round() as u8;
                        }
                    }
                });
            }
            x += advance;
        }
    }
}

/// The plate's printed grouping: `AX 1234 BI`, `12345 AA`, else the text itself.
fn group(text: &str) -> String {
    match varta_core::plate::format_of(text) {
        varta_core::plate::PlateFormat::UaCivil => format!("{} {} {}", &text[..2], &text[2..6], &text[6..]),
        varta_core::plate::PlateFormat::UaCivil1995 => format!("{} {}", &text[..5], &text[5..]),
        varta_core::plate::PlateFormat::Other => text.to_owned(),
    }
}

/// A random Ukrainian plate, normalised Latin: nine in ten of the current civil format
/// (`AA1234BB`), one in ten of the 1995 format (`12345AA`).
pub fn random_plate(rng: &mut impl Rng) -> String {
    const LETTERS: &[u8] = b"ABCEHIKMOPTX";
    let letter = |rng: &mut dyn rand::RngCore| LETTERS[rng.random_range(0..LETTERS.len())] as char;
    let mut s = String::new();
    if rng.random_bool(0.9) {
        s.push(letter(rng));
        s.push(letter(rng));
        s.push_str(&format!("{:04}", rng.random_range(0..10_000)));
        s.push(letter(rng));
        s.push(letter(rng));
    } else {
        s.push_str(&format!("{:05}", rng.random_range(0..100_000)));
        s.push(letter(rng));
        s.push(letter(rng));
    }
    s
}

/// Pastes `plate` onto `dst` centred at (`cx`, `cy`) (pixels of `dst`), turned by
/// `angle_deg` (positive: clockwise), with bilinear sampling and soft edges.
pub fn place(dst: &mut RgbImage, plate: &RgbImage, cx: f32, cy: f32, angle_deg: f32) {
    let (sin, cos) = angle_deg.to_radians().sin_cos();
    let (pw, ph) = (plate.width() as f32, plate.height() as f32);
    let reach = (pw * pw + ph * ph).sqrt() / 2.0 + 2.0;
    let (x0, x1) = ((cx - reach).floor().max(0.0) as u32, ((cx + reach).ceil() as u32).min(dst.width()));
    let (y0, y1) = ((cy - reach).floor().max(0.0) as u32, ((cy + reach).ceil() as u32).min(dst.height()));
    for y in y0..y1 {
        for x in x0..x1 {
            // Into the plate's frame: rotate back by the angle.
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let u = cos * dx + sin * dy + pw / 2.0 - 0.5;
            let v = -sin * dx + cos * dy + ph / 2.0 - 0.5;
            // Coverage: 1 inside, fading over one pixel at the edges.
            let alpha = ((u + 1.0).min(pw - u).clamp(0.0, 1.0)) * ((v + 1.0).min(ph - v).clamp(0.0, 1.0));
            if alpha <= 0.0 {
                continue;
            }
            let s = bilinear(plate, u, v);
            let p = dst.get_pixel_mut(x, y);
            for (c, sv) in p.0.iter_mut().zip(s) {
                *c = (*c as f32 * (1.0 - alpha) + sv * alpha).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

fn bilinear(img: &RgbImage, u: f32, v: f32) -> [f32; 3] {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let (fx, fy) = (u.floor(), v.floor());
    let (ax, ay) = (u - fx, v - fy);
    let at = |x: i32, y: i32| img.get_pixel(x.clamp(0, w - 1) as u32, y.clamp(0, h - 1) as u32).0;
    let (x, y) = (fx as i32, fy as i32);
    let (p00, p10, p01, p11) = (at(x, y), at(x + 1, y), at(x, y + 1), at(x + 1, y + 1));
    std::array::from_fn(|k| {
        let top = p00[k] as f32 * (1.0 - ax) + p10[k] as f32 * ax;
        let bottom = p01[k] as f32 * (1.0 - ax) + p11[k] as f32 * ax;
        top * (1.0 - ay) + bottom * ay
    })
}

/// The picture after a round trip through JPEG at `quality` (1–100).
///
/// Errors: the encoder's or decoder's message (should not happen for an RGB picture).
pub fn jpeg_round_trip(img: &RgbImage, quality: u8) -> Result<RgbImage, String> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(img)
        .map_err(|e| format!("JPEG encode: {e}"))?;
    Ok(image::load_from_memory(&buf).map_err(|e| format!("JPEG decode: {e}"))?.to_rgb8())
}

/// One vehicle passage of a plate scene: the ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Passage {
    /// The plate the vehicle carries, normalised Latin.
    pub plate: String,
    /// Seconds from the clip's start when the vehicle enters the picture…
    pub enters_s: f64,
    /// …and when it has left.
    pub leaves_s: f64,
}

/// Size and pace of the plate scene: 960 × 540 at 10 fps, a keyframe every 2 s.
const SCENE_W: u32 = 960;
const SCENE_H: u32 = 540;
const SCENE_FPS: u32 = 10;
/// Seconds a vehicle takes to cross the picture, and the empty road after it.
const CROSSING_S: f64 = 6.0;
const GAP_S: f64 = 2.0;

/// Writes an H.264 MP4 at `out` in which one vehicle per entry of `plates` drives
/// across a road, left to right, each carrying its plate (characters 26 px high),
/// and returns the ground truth. The vehicles are node-opencv's `car1.jpg` and
/// `car2.jpg` from `images` (Debian; `./scripts/setup` fetches them), in turn. The
/// clip loops cleanly (it starts and ends on an empty road) and has a keyframe every
/// 2 s, as the simulator wants.
///
/// Errors: a missing picture or font, or GStreamer without x264enc (plugins-ugly).
pub fn write_scene(out: &std::path::Path, images: &std::path::Path, plates: &[String]) -> Result<Vec<Passage>, String> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    let font = PlateFont::load(DEFAULT_FONT)?;
    let mut sprites = Vec::new();
    for (file, [x1, y1, x2, y2]) in [("car1.jpg", [40u32, 150, 990, 500]), ("car2.jpg", [120, 330, 1410, 800])] {
        let path = images.join(file);
        let img = image::open(&path).map_err(|e| format!("{}: {e} (run ./scripts/setup)", path.display()))?.to_rgb8();
        let crop = imageops::crop_imm(&img, x1, y1, x2 - x1, y2 - y1).to_image();
        let h = (560.0 * crop.height() as f32 / crop.width() as f32).round() as u32;
        sprites.push(imageops::resize(&crop, 560, h, imageops::FilterType::Triangle));
    }
    let cars: Vec<RgbImage> = plates
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut car = sprites[i % sprites.len()].clone();
            let plate = font.render(p, 26.0);
            let (w, h) = (car.width() as f32, car.height() as f32);
            place(&mut car, &plate, w * 0.55, h * 0.62, if i % 2 == 0 { 3.0 } else { -4.0 });
            car
        })
        .collect();
    // A road: a pale wall above, asphalt below, a kerb between.
    let road = RgbImage::from_fn(SCENE_W, SCENE_H, |_, y| match y {
        0..180 => Rgb([190, 188, 180]),
        180..196 => Rgb([120, 120, 118]),
        _ => Rgb([88 + (y % 7) as u8, 88 + (y % 7) as u8, 92]),
    });
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={SCENE_W},height={SCENE_H},framerate={SCENE_FPS}/1 \
         ! videoconvert ! x264enc tune=zerolatency speed-preset=veryfast bitrate=6000 key-int-max={} \
         ! h264parse ! mp4mux ! filesink name=sink",
        2 * SCENE_FPS
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("plate scene encoder (x264enc, plugins-ugly): {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
    let part = out.with_extension("mp4.part");
    pipeline.by_name("sink").expect("sink").set_property("location", part.to_string_lossy().to_string());
    let src = pipeline.by_name("src").expect("src").downcast::<gstreamer_app::AppSrc>().expect("appsrc");
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("plate scene encoder: {e}"))?;
    let per = ((CROSSING_S + GAP_S) * SCENE_FPS as f64).round() as usize;
    let mut truth = Vec::new();
    let mut noise = 0x9e37_79b9_7f4a_7c15_u64;
    for (i, (car, p)) in cars.iter().zip(plates).enumerate() {
        let t0 = (i * per) as f64 / SCENE_FPS as f64;
        truth.push(Passage { plate: p.clone(), enters_s: t0, leaves_s: t0 + CROSSING_S });
        for f in 0..per {
            let mut frame = road.clone();
            let t = f as f64 / SCENE_FPS as f64;
            if t < CROSSING_S {
                // From just out of view on the left to just out of view on the right.
                let x = -(car.width() as f64) + (SCENE_W + car.width()) as f64 * t / CROSSING_S;
                let y = SCENE_H as i64 - car.height() as i64 - 40;
                imageops::overlay(&mut frame, car, x.round() as i64, y);
            }
            // Sensor noise, so no two pictures are alike (a camera is never frozen).
            for v in frame.as_mut().iter_mut().step_by(7) {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                *v = v.saturating_add((noise % 3) as u8);
            }
            let mut buf = gst::Buffer::from_mut_slice(frame.into_raw());
            let pts = ((i * per + f) as u64) * 1_000_000_000 / SCENE_FPS as u64;
            buf.get_mut().expect("new buffer").set_pts(gst::ClockTime::from_nseconds(pts));
            src.push_buffer(buf).map_err(|e| format!("plate scene encoder: {e:?}"))?;
        }
    }
    let _ = src.end_of_stream();
    let bus = pipeline.bus().expect("bus");
    let result = match bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(120), &[gst::MessageType::Eos, gst::MessageType::Error])
    {
        Some(m) => match m.view() {
            gst::MessageView::Eos(_) => Ok(()),
            gst::MessageView::Error(e) => Err(format!("plate scene encoder: {}", e.error())),
            _ => Ok(()),
        },
        None => Err("plate scene encoder: no end of stream within 120 s".to_owned()),
    };
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    std::fs::rename(&part, out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(truth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_plates_are_valid_ukrainian_formats() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let p = random_plate(&mut rng);
            assert!(varta_core::plate::format_of(&p).is_ukrainian(), "{p}");
        }
    }

    #[test]
    fn a_plate_has_the_asked_size_and_dark_characters_on_a_light_field() {
        let font = PlateFont::load(DEFAULT_FONT).expect("./scripts/setup installs fonts-dejavu-core");
        let img = font.render("AX1234BI", 20.0);
        let h = img.height() as f32;
        assert!((h - 20.0 / CHAR_SHARE).abs() <= 1.0, "height {h}");
        assert!((img.width() as f32 / h - ASPECT).abs() < 0.1);
        let dark =
            img.pixels().filter(|p| p.0[0] < 80 && p.0[2] < 80).count() as f32 / (img.width() * img.height()) as f32;
        assert!((0.08..0.5).contains(&dark), "share of dark pixels {dark}");
    }
}
