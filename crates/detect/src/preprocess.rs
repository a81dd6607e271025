//! From a frame at the camera's resolution to the model's input tensor, in one pass:
//! bilinear scaling (stretch or letterbox), YUV → RGB conversion, normalisation and
//! layout. The same code serves the service (I420 frames), `varta detect` and
//! `varta eval` (RGB pictures), so a detection seen in one is seen in the others.
//!
//! For I420 the three planes are interpolated separately and converted once per
//! output pixel: a 1080p frame costs the same as a 576p one, since only the output
//! pixels are computed.

use crate::manifest::{Channels, Layout, ModelSpec, Resize};
use ndarray::{s, Array4, ArrayView1, ArrayView2, ArrayView3, ArrayViewMut1, ArrayViewMut3, Axis};
use varta_core::frame::{Frame, Pixels};

/// Where the picture lies in the model input: `input = source × scale + offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// Horizontal scale, input pixels per source pixel.
    pub sx: f32,
    /// Vertical scale.
    pub sy: f32,
    /// Left border in input pixels (letterbox).
    pub ox: f32,
    /// Top border in input pixels (letterbox).
    pub oy: f32,
    /// Source size, to clip boxes.
    pub src: (u32, u32),
}

impl Geometry {
    /// How a `w × h` picture is fitted to `spec`'s input.
    pub fn new(spec: &ModelSpec, w: u32, h: u32) -> Geometry {
        let (iw, ih) = (spec.width as f32, spec.height as f32);
        let (w1, h1) = (w.max(1) as f32, h.max(1) as f32);
        match spec.resize {
            Resize::Stretch => Geometry { sx: iw / w1, sy: ih / h1, ox: 0.0, oy: 0.0, src: (w, h) },
            Resize::Letterbox => {
                let s = (iw / w1).min(ih / h1);
                let ox = ((iw - w1 * s) / 2.0).floor();
                let oy = ((ih - h1 * s) / 2.0).floor();
                Geometry { sx: s, sy: s, ox, oy, src: (w, h) }
            }
        }
    }

    /// A box in input pixels to source pixels, clipped to the picture.
    pub fn to_source(&self, b: [f32; 4]) -> [f32; 4] {
        let (w, h) = (self.src.0 as f32, self.src.1 as f32);
        [
            ((b[0] - self.ox) / self.sx).clamp(0.0, w),
            ((b[1] - self.oy) / self.sy).clamp(0.0, h),
            ((b[2] - self.ox) / self.sx).clamp(0.0, w),
            ((b[3] - self.oy) / self.sy).clamp(0.0, h),
        ]
    }
}

/// Precomputed bilinear taps along one axis: for each output position, the first
/// source index and the weight of the next one.
struct Taps {
    i0: Vec<u32>,
    i1: Vec<u32>,
    f: Vec<f32>,
}

impl Taps {
    /// `n` output positions starting at input offset `o`, scale `s` (input per
    /// source), over `len` source samples; `sub` = source subsampling (2 for chroma).
    fn new(n: usize, s: f32, len: usize, sub: f32) -> Taps {
        let (mut i0, mut i1, mut f) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let last = len.saturating_sub(1) as f32;
        for o in 0..n {
            // Pixel centres: source position of the output pixel's centre.
            let x = (((o as f32 + 0.5) / s) / sub - 0.5).clamp(0.0, last);
            let x0 = x.floor();
            i0.push(x0 as u32);
            i1.push((x0 + 1.0).min(last) as u32);
            f.push(x - x0);
        }
        Taps { i0, i1, f }
    }
}

/// The model's input for `batch` images, zeroed: `[batch, height, width, 3]` for
/// NHWC models, `[batch, 3, height, width]` for NCHW ones (the manifest's layout).
pub fn input_tensor(spec: &ModelSpec, batch: usize) -> Array4<f32> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    match spec.layout {
        Layout::Nhwc => Array4::zeros((batch, h, w, 3)),
        Layout::Nchw => Array4::zeros((batch, 3, h, w)),
    }
}

/// Image `i` of an input tensor made by [`input_tensor`], as a `[y, x, channel]`
/// view whatever its layout in memory (NCHW: the axes permuted, not copied).
pub fn image_mut(input: &mut Array4<f32>, i: usize, layout: Layout) -> ArrayViewMut3<'_, f32> {
    hwc(input.index_axis_mut(Axis(0), i), layout)
}

/// One image's `width × height × 3` values in the model's layout, as a `[y, x,
/// channel]` view, for the tests' flat buffers. Panics if `buf` is not exactly one
/// image.
#[cfg(test)]
fn image_view<'a>(buf: &'a mut [f32], spec: &ModelSpec) -> ArrayViewMut3<'a, f32> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let shape = match spec.layout {
        Layout::Nhwc => (h, w, 3),
        Layout::Nchw => (3, h, w),
    };
    let view = ArrayViewMut3::from_shape(shape, buf).expect("one image of the model's input");
    hwc(view, spec.layout)
}

fn hwc(image: ArrayViewMut3<'_, f32>, layout: Layout) -> ArrayViewMut3<'_, f32> {
    match layout {
        Layout::Nhwc => image,
        Layout::Nchw => image.permuted_axes([1, 2, 0]),
    }
}

/// Bilinear sample of one 8-bit plane between source rows `top` and `bot`.
#[inline(always)]
fn lerp2(top: &ArrayView1<u8>, bot: &ArrayView1<u8>, fy: f32, x0: usize, x1: usize, fx: f32) -> f32 {
    let a = top[x0] as f32 + (top[x1] as f32 - top[x0] as f32) * fx;
    let b = bot[x0] as f32 + (bot[x1] as f32 - bot[x0] as f32) * fx;
    a + (b - a) * fy
}

/// Writes `frame` into `dst`, one image of the model's input as a `[y, x, channel]`
/// view of `height × width × 3` values ([`image_mut`]), and returns
/// where the picture lies in it. Panics if `dst` has another shape.
pub fn fill(mut dst: ArrayViewMut3<f32>, frame: &Frame, spec: &ModelSpec) -> Geometry {
    let (iw, ih) = (spec.width as usize, spec.height as usize);
    assert_eq!(dst.shape(), [ih, iw, 3], "input image of model {}", spec.name);
    let g = Geometry::new(spec, frame.width, frame.height);
    // Region of the input covered by the picture.
    let x_start = g.ox as usize;
    let y_start = g.oy as usize;
    let x_n = ((frame.width as f32 * g.sx).round() as usize).min(iw - x_start);
    let y_n = ((frame.height as f32 * g.sy).round() as usize).min(ih - y_start);
    // input value = pixel * a[c] + b[c]
    let a: [f32; 3] = std::array::from_fn(|c| spec.scale / spec.std[c]);
    let b: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
    let bgr = spec.channels == Channels::Bgr;
    let put = |mut px: ArrayViewMut1<f32>, rgb: [f32; 3]| {
        let rgb = if bgr { [rgb[2], rgb[1], rgb[0]] } else { rgb };
        for c in 0..3 {
            px[c] = rgb[c] * a[c] + b[c];
        }
    };
    // Letterbox borders: the same grey in every channel, normalised per channel.
    let pad: [f32; 3] = std::array::from_fn(|c| spec.pad as f32 * a[c] + b[c]);
    let (y_end, x_end) = (y_start + y_n, x_start + x_n);
    for region in
        [s![..y_start, .., ..], s![y_end.., .., ..], s![y_start..y_end, ..x_start, ..], s![y_start..y_end, x_end.., ..]]
    {
        for (c, mut plane) in dst.slice_mut(region).axis_iter_mut(Axis(2)).enumerate() {
            plane.fill(pad[c]);
        }
    }
    let mut picture = dst.slice_mut(s![y_start..y_end, x_start..x_end, ..]);
    let (w, h) = (frame.width as usize, frame.height as usize);
    match &frame.pixels {
        Pixels::I420(data) => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let (yp, rest) = data.split_at(w * h);
            let (up, vp) = rest.split_at(cw * ch);
            let yp = ArrayView2::from_shape((h, w), yp).expect("I420 luma plane");
            let up = ArrayView2::from_shape((ch, cw), up).expect("I420 U plane");
            let vp = ArrayView2::from_shape((ch, cw), &vp[..cw * ch]).expect("I420 V plane");
            let (tx, ty) = (Taps::new(x_n, g.sx, w, 1.0), Taps::new(y_n, g.sy, h, 1.0));
            let (cx, cy) = (Taps::new(x_n, g.sx, cw, 2.0), Taps::new(y_n, g.sy, ch, 2.0));
            for (oy, mut row) in picture.outer_iter_mut().enumerate() {
                let (y0, y1, fy) = (yp.row(ty.i0[oy] as usize), yp.row(ty.i1[oy] as usize), ty.f[oy]);
                let (c0, c1, fc) = (cy.i0[oy] as usize, cy.i1[oy] as usize, cy.f[oy]);
                let (u0r, u1r, v0r, v1r) = (up.row(c0), up.row(c1), vp.row(c0), vp.row(c1));
                for (ox, px) in row.outer_iter_mut().enumerate() {
                    let l = lerp2(&y0, &y1, fy, tx.i0[ox] as usize, tx.i1[ox] as usize, tx.f[ox]);
                    let (u0, u1, fu) = (cx.i0[ox] as usize, cx.i1[ox] as usize, cx.f[ox]);
                    let u = lerp2(&u0r, &u1r, fc, u0, u1, fu) - 128.0;
                    let v = lerp2(&v0r, &v1r, fc, u0, u1, fu) - 128.0;
                    // BT.601, limited range.
                    let l = 1.164 * (l - 16.0);
                    let rgb = [
                        (l + 1.596 * v).clamp(0.0, 255.0),
                        (l - 0.392 * u - 0.813 * v).clamp(0.0, 255.0),
                        (l + 2.017 * u).clamp(0.0, 255.0),
                    ];
                    put(px, rgb);
                }
            }
        }
        Pixels::Rgb(data) => {
            let src = ArrayView3::from_shape((h, w, 3), &data[..]).expect("packed RGB picture");
            let (tx, ty) = (Taps::new(x_n, g.sx, w, 1.0), Taps::new(y_n, g.sy, h, 1.0));
            for (oy, mut row) in picture.outer_iter_mut().enumerate() {
                let (top, bot, fy) = (
                    src.index_axis(Axis(0), ty.i0[oy] as usize),
                    src.index_axis(Axis(0), ty.i1[oy] as usize),
                    ty.f[oy],
                );
                for (ox, px) in row.outer_iter_mut().enumerate() {
                    let (x0, x1, fx) = (tx.i0[ox] as usize, tx.i1[ox] as usize, tx.f[ox]);
                    let rgb = std::array::from_fn(|c| {
                        let t = top[[x0, c]] as f32 + (top[[x1, c]] as f32 - top[[x0, c]] as f32) * fx;
                        let b = bot[[x0, c]] as f32 + (bot[[x1, c]] as f32 - bot[[x0, c]] as f32) * fx;
                        t + (b - t) * fy
                    });
                    put(px, rgb);
                }
            }
        }
    }
    g
}

/// Converts a frame to packed RGB at its own size (snapshots).
pub fn to_rgb(frame: &Frame) -> Vec<u8> {
    to_rgb_rect(frame, [0, 0, frame.width, frame.height])
}

/// Converts the rectangle `[x, y, w, h]` of a frame (camera pixels, inside the
/// picture) to packed RGB, `w × h × 3` (plate crops: only the vehicle is converted).
pub fn to_rgb_rect(frame: &Frame, [rx, ry, rw, rh]: [u32; 4]) -> Vec<u8> {
    let w = frame.width as usize;
    let (rx, ry, rw, rh) = (rx as usize, ry as usize, rw as usize, rh as usize);
    match &frame.pixels {
        Pixels::Rgb(data) => {
            let mut out = Vec::with_capacity(rw * rh * 3);
            for y in ry..ry + rh {
                out.extend_from_slice(&data[(y * w + rx) * 3..(y * w + rx + rw) * 3]);
            }
            out
        }
        Pixels::I420(data) => {
            let h = frame.height as usize;
            let cw = w.div_ceil(2);
            let (yp, rest) = data.split_at(w * h);
            let (up, vp) = rest.split_at(cw * h.div_ceil(2));
            let mut out = Vec::with_capacity(rw * rh * 3);
            for y in ry..ry + rh {
                for x in rx..rx + rw {
                    let l = 1.164 * (yp[y * w + x] as f32 - 16.0);
                    let ci = (y / 2) * cw + x / 2;
                    let (u, v) = (up[ci] as f32 - 128.0, vp[ci] as f32 - 128.0);
                    out.push((l + 1.596 * v).clamp(0.0, 255.0) as u8);
                    out.push((l - 0.392 * u - 0.813 * v).clamp(0.0, 255.0) as u8);
                    out.push((l + 2.017 * u).clamp(0.0, 255.0) as u8);
                }
            }
            out
        }
    }
}

/// Converts packed RGB to I420 (BT.601 limited range), as a decoder would give it:
/// for tests and benchmarks that need camera-like frames.
pub fn rgb_to_i420(rgb: &[u8], w: usize, h: usize) -> Vec<u8> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut out = vec![0u8; w * h + 2 * cw * ch];
    let px = |x: usize, y: usize| {
        let i = (y.min(h - 1) * w + x.min(w - 1)) * 3;
        (rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32)
    };
    for y in 0..h {
        for x in 0..w {
            let (r, g, b) = px(x, y);
            out[y * w + x] = (16.0 + 0.257 * r + 0.504 * g + 0.098 * b).round() as u8;
        }
    }
    let (us, vs) = out[w * h..].split_at_mut(cw * ch);
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut r, mut g, mut b) = (0.0, 0.0, 0.0);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = px(cx * 2 + dx, cy * 2 + dy);
                r += p.0 / 4.0;
                g += p.1 / 4.0;
                b += p.2 / 4.0;
            }
            us[cy * cw + cx] = (128.0 - 0.148 * r - 0.291 * g + 0.439 * b).round().clamp(0.0, 255.0) as u8;
            vs[cy * cw + cx] = (128.0 + 0.439 * r - 0.368 * g - 0.071 * b).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{BoxOrder, Decoder};
    use chrono::Utc;

    fn spec(resize: Resize, layout: Layout, w: u32, h: u32) -> ModelSpec {
        ModelSpec {
            name: "t".into(),
            file: "x".into(),
            sha256: String::new(),
            labels: "x".into(),
            input: "in".into(),
            outputs: vec!["out".into()],
            layout,
            width: w,
            height: h,
            channels: Channels::Rgb,
            scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            resize,
            pad: 114,
            decoder: Decoder::Centernet,
            nms_iou: 0.45,
            box_order: BoxOrder::Xyxy,
            boxes_normalized: false,
            class_offset: 0,
            strides: vec![8, 16, 32],
            max_batch: 1,
        }
    }

    #[test]
    fn bgr_models_get_blue_first() {
        let mut s = spec(Resize::Stretch, Layout::Nchw, 2, 2);
        let f = Frame::from_rgb("c".into(), Utc::now(), 2, 2, [10u8, 20, 30].repeat(4));
        let mut dst = vec![0.0; 12];
        fill(image_view(&mut dst, &s), &f, &s);
        assert_eq!((dst[0], dst[4], dst[8]), (10.0, 20.0, 30.0));
        s.channels = Channels::Bgr;
        fill(image_view(&mut dst, &s), &f, &s);
        assert_eq!((dst[0], dst[4], dst[8]), (30.0, 20.0, 10.0));
    }

    #[test]
    fn letterbox_geometry_round_trips_boxes() {
        let s = spec(Resize::Letterbox, Layout::Nchw, 640, 640);
        let g = Geometry::new(&s, 1920, 1080);
        assert_eq!((g.sx, g.ox, g.oy), (1.0 / 3.0, 0.0, 140.0));
        let b = g.to_source([64.0, 140.0 + 36.0, 128.0, 140.0 + 72.0]);
        assert_eq!(b, [192.0, 108.0, 384.0, 216.0]);
        // Clipped to the picture.
        assert_eq!(g.to_source([-5.0, 0.0, 700.0, 640.0]), [0.0, 0.0, 1920.0, 1080.0]);
    }

    #[test]
    fn i420_and_rgb_give_the_same_input() {
        // A colour gradient: the YUV path must reproduce the RGB path closely.
        let (w, h) = (96usize, 64usize);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 255 / w) as u8, (y * 255 / h) as u8, 128]
            })
            .collect();
        let yuv = rgb_to_i420(&rgb, w, h);
        let now = Utc::now();
        let f_rgb = Frame::from_rgb("c".into(), now, w as u32, h as u32, rgb);
        let f_yuv = Frame { pixels: Pixels::I420(yuv.into()), ..f_rgb.clone() };
        for resize in [Resize::Stretch, Resize::Letterbox] {
            for layout in [Layout::Nhwc, Layout::Nchw] {
                let s = spec(resize, layout, 48, 48);
                let (mut a, mut b) = (vec![0.0; 48 * 48 * 3], vec![0.0; 48 * 48 * 3]);
                let ga = fill(image_view(&mut a, &s), &f_rgb, &s);
                let gb = fill(image_view(&mut b, &s), &f_yuv, &s);
                assert_eq!(ga, gb);
                let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(worst < 12.0, "{resize:?} {layout:?}: worst difference {worst}");
            }
        }
        // Letterbox: 96x64 into 48x48 leaves 8 rows of padding top and bottom.
        let s = spec(Resize::Letterbox, Layout::Nhwc, 48, 48);
        let mut a = vec![0.0; 48 * 48 * 3];
        fill(image_view(&mut a, &s), &f_rgb, &s);
        assert_eq!(a[0], 114.0);
        assert_eq!(a[(47 * 48) * 3], 114.0);
        assert_ne!(a[(24 * 48) * 3 + 3], 114.0);
    }

    #[test]
    fn normalisation_and_nchw_layout() {
        let mut s = spec(Resize::Stretch, Layout::Nchw, 2, 2);
        s.scale = 1.0 / 255.0;
        s.mean = [0.5, 0.5, 0.5];
        s.std = [0.5, 0.5, 0.5];
        let f = Frame::from_rgb("c".into(), Utc::now(), 2, 2, vec![255, 0, 255, 255, 0, 255, 255, 0, 255, 255, 0, 255]);
        let mut d = vec![0.0; 12];
        fill(image_view(&mut d, &s), &f, &s);
        assert_eq!(&d[0..4], &[1.0; 4]); // R plane
        assert_eq!(&d[4..8], &[-1.0; 4]); // G plane
        assert_eq!(&d[8..12], &[1.0; 4]); // B plane
    }

    #[test]
    fn odd_sizes_do_not_read_out_of_bounds() {
        let (w, h) = (33usize, 17usize);
        let yuv = vec![128u8; Frame::i420_len(w as u32, h as u32)];
        let f = Frame {
            pixels: Pixels::I420(yuv.into()),
            ..Frame::from_rgb("c".into(), Utc::now(), 33, 17, vec![0; 33 * 17 * 3])
        };
        let s = spec(Resize::Stretch, Layout::Nhwc, 64, 64);
        let mut d = vec![0.0; 64 * 64 * 3];
        fill(image_view(&mut d, &s), &f, &s);
        assert_eq!(to_rgb(&f).len(), w * h * 3);
    }
}
