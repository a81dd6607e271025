//! Event snapshots: the best frame of an event as two JPEG files in the snapshot
//! directory, `<event id>.jpg` (the whole picture, the object's box drawn) and
//! `<event id>.crop.jpg` (the object alone, a little margin around it). An
//! `updated` event rewrites both; each file is written to a temporary name and
//! renamed, so a reader never sees half a picture.

use crate::preprocess::to_rgb;
use crate::rules::{snapshot_name, SnapshotJob};
use std::path::{Path, PathBuf};
use varta_core::event::BBox;
use varta_core::{Error, ErrorKind, EventId};

/// Writes snapshots into one directory.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    quality: u8,
}

/// Colour of the drawn box: a yellow that shows on day and night pictures.
const BOX_RGB: [u8; 3] = [255, 220, 0];

impl SnapshotStore {
    /// A store in `dir` (created if missing) writing JPEG at `quality` (1..100).
    pub fn new(dir: &Path, quality: u8) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::wrap(ErrorKind::Unavailable, format!("snapshot directory {}", dir.display()), e))?;
        // A process killed while writing leaves a temporary file, never a JPEG.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".jpg.tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(SnapshotStore { dir: dir.to_owned(), quality: quality.clamp(1, 100) })
    }

    /// The full picture's path of event `id`.
    pub fn path(&self, id: &EventId) -> PathBuf {
        self.dir.join(snapshot_name(id))
    }

    /// The crop's path of event `id`.
    pub fn crop_path(&self, id: &EventId) -> PathBuf {
        self.dir.join(format!("{id}.crop.jpg"))
    }

    /// Writes both files of event `id`.
    pub fn write(&self, id: &EventId, job: &SnapshotJob) -> Result<(), Error> {
        let e = self.encode(job)?;
        self.write_encoded(id, &e)
    }

    /// Encodes both pictures of `job` as JPEG, in memory (the CPU part; no file yet).
    pub fn encode(&self, job: &SnapshotJob) -> Result<Encoded, Error> {
        let (w, h) = (job.frame.width as usize, job.frame.height as usize);
        let mut rgb = to_rgb(&job.frame);
        let crop = crop_rect(job.crop, w, h);
        let cropped = cut(&rgb, w, crop);
        for b in &job.boxes {
            draw_box(&mut rgb, w, h, *b);
        }
        Ok(Encoded { full: self.jpeg(&rgb, w, h)?, crop: self.jpeg(&cropped, crop.2, crop.3)? })
    }

    /// Writes the encoded pictures of event `id`, each to a temporary name renamed
    /// into place.
    pub fn write_encoded(&self, id: &EventId, e: &Encoded) -> Result<(), Error> {
        save(&self.path(id), &e.full)?;
        save(&self.crop_path(id), &e.crop)
    }

    /// Writes `img` as `name` (a plate crop, `<id>.plate.jpg`) in the snapshot
    /// directory, atomically like the snapshots.
    pub fn write_picture(&self, name: &str, img: &image::RgbImage) -> Result<(), Error> {
        let jpeg = self.jpeg(img.as_raw(), img.width() as usize, img.height() as usize)?;
        save(&self.dir.join(name), &jpeg)
    }

    fn jpeg(&self, rgb: &[u8], w: usize, h: usize) -> Result<Vec<u8>, Error> {
        // jpeg-encoder, not image's encoder: 6.7 ms against 22.6 ms for a 768x576
        // picture here, and snapshots were 16% of a 32-camera node's CPU (issue #16).
        let mut buf = Vec::with_capacity(w * h / 4);
        let (w, h) = (u16::try_from(w), u16::try_from(h));
        let (Ok(w), Ok(h)) = (w, h) else {
            return Err(varta_core::err!(InvalidArgument, "a snapshot wider or taller than 65535 pixels"));
        };
        jpeg_encoder::Encoder::new(&mut buf, self.quality)
            .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| Error::wrap(ErrorKind::Internal, "encoding a snapshot", e))?;
        Ok(buf)
    }
}

/// An event's two JPEG pictures, encoded, not yet written.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The whole picture with the boxes drawn.
    pub full: Vec<u8>,
    /// The object alone.
    pub crop: Vec<u8>,
}

fn save(path: &Path, jpeg: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("jpg.tmp");
    let io = |e: std::io::Error| Error::wrap(ErrorKind::Unavailable, format!("writing {}", path.display()), e);
    std::fs::write(&tmp, jpeg).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The crop rectangle `(x, y, w, h)`: the box with 15% margin, inside the picture,
/// at least 16 pixels each way.
fn crop_rect(b: BBox, w: usize, h: usize) -> (usize, usize, usize, usize) {
    let (bw, bh) = ((b[2] - b[0]).max(0.0), (b[3] - b[1]).max(0.0));
    let (mx, my) = (bw * 0.15 + 4.0, bh * 0.15 + 4.0);
    let x0 = ((b[0] - mx).max(0.0) as usize).min(w.saturating_sub(16));
    let y0 = ((b[1] - my).max(0.0) as usize).min(h.saturating_sub(16));
    let x1 = ((b[2] + mx).min(w as f32) as usize).max(x0 + 16).min(w);
    let y1 = ((b[3] + my).min(h as f32) as usize).max(y0 + 16).min(h);
    (x0, y0, (x1 - x0).max(1), (y1 - y0).max(1))
}

fn cut(rgb: &[u8], w: usize, (x, y, cw, ch): (usize, usize, usize, usize)) -> Vec<u8> {
    let mut out = Vec::with_capacity(cw * ch * 3);
    for row in y..y + ch {
        out.extend_from_slice(&rgb[(row * w + x) * 3..(row * w + x + cw) * 3]);
    }
    out
}

/// Draws a rectangle outline, about 3 pixels thick on a 576-line picture.
fn draw_box(rgb: &mut [u8], w: usize, h: usize, b: BBox) {
    if w == 0 || h == 0 {
        return;
    }
    let t = (h / 200).max(2);
    let x0 = (b[0].max(0.0) as usize).min(w - 1);
    let y0 = (b[1].max(0.0) as usize).min(h - 1);
    let x1 = (b[2].max(0.0) as usize).min(w - 1);
    let y1 = (b[3].max(0.0) as usize).min(h - 1);
    let mut put = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        rgb[i..i + 3].copy_from_slice(&BOX_RGB);
    };
    for y in y0..=y1 {
        for x in x0..=x1 {
            let edge = x < x0 + t || x + t > x1 || y < y0 + t || y + t > y1;
            if edge {
                put(x, y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varta_core::frame::{Frame, Pixels};

    #[test]
    fn writes_the_picture_with_the_box_and_the_crop() {
        let dir = std::env::temp_dir().join(format!("varta-snap-{}", std::process::id()));
        let store = SnapshotStore::new(&dir, 85).unwrap();
        let (w, h) = (320u32, 240u32);
        let grey = vec![128u8; Frame::i420_len(w, h)];
        let frame = Frame {
            pixels: Pixels::I420(grey.into()),
            ..Frame::from_rgb("cam".into(), chrono::Utc::now(), w, h, vec![0; (w * h * 3) as usize])
        };
        let id = varta_core::ids::new_event_id();
        let job = SnapshotJob { frame, boxes: vec![[100., 50., 160., 200.]], crop: [100., 50., 160., 200.] };
        store.write(&id, &job).unwrap();
        let full = image::open(store.path(&id)).unwrap().to_rgb8();
        assert_eq!(full.dimensions(), (320, 240));
        // The box's edge is drawn, the inside is the picture.
        let edge = full.get_pixel(100, 120).0;
        let inside = full.get_pixel(130, 120).0;
        assert!(edge[0] > 200 && edge[2] < 80, "{edge:?}");
        assert!((inside[0] as i32 - 128).abs() < 20, "{inside:?}");
        let crop = image::open(store.crop_path(&id)).unwrap().to_rgb8();
        let (cw, ch) = crop.dimensions();
        assert!((60..=100).contains(&cw) && (150..=220).contains(&ch), "{cw}x{ch}");
        assert!(!dir.join(format!("{id}.jpg.tmp")).exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn crops_stay_inside_the_picture() {
        assert_eq!(crop_rect([-10., -10., 5., 5.], 100, 80), (0, 0, 16, 16));
        let (x, y, w, h) = crop_rect([90., 70., 120., 90.], 100, 80);
        assert!(x + w <= 100 && y + h <= 80);
    }
}
