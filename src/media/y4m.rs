//! Y4M (YUV4MPEG2) clips as a video source: the format Chromium's `--use-file-for-fake-video-capture`
//! reads. A clip is sent looped, at its own size and rate (the header's `F`).
//!
//! [`Y4mClip::open`] reads the header and walks every frame's `FRAME` line once, so a missing,
//! truncated or non-4:2:0 file is refused with its name and what is wrong before a call starts;
//! the source then seeks straight to each frame. 4:2:0 is `C420jpeg`, `C420paldv`, `C420mpeg2`,
//! `C420` or no `C` at all; 4:2:2, 4:4:4, mono and high bit depths are refused. An odd size is read
//! with its chroma rounded up (as the format stores it) and sent cropped to the even size below it.
//!
//! A small parser rather than the `y4m` crate (0.8): that one reads a stream front to back, so
//! looping means reopening, and its errors (`EOF`, `BadInput`) do not say which frame is cut short.

use super::frame::I420Frame;
use super::source::{pace, VideoSource};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest header line we accept (real ones are well under 100 bytes).
const MAX_HEADER: usize = 4096;
/// The largest picture side we accept.
const MAX_SIDE: usize = 4096;

/// What is wrong with a clip, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Y4mError {
    /// The file cannot be opened or read.
    #[error("video file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The stream header is missing, cut off or malformed.
    #[error("video file {}: not a usable Y4M file: {what}", .path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The colour space is not 4:2:0 (8-bit).
    #[error(
        "video file {}: colour space C{colourspace} is not 4:2:0; convert it with \
         `ffmpeg -i {} -pix_fmt yuv420p out.y4m`",
        .path.display(), .path.display()
    )]
    NotYuv420 {
        /// The file.
        path: PathBuf,
        /// The header's `C` value.
        colourspace: String,
    },
    /// A frame is malformed or cut short.
    #[error("video file {}: frame {index} {what}", .path.display())]
    Frame {
        /// The file.
        path: PathBuf,
        /// Which frame (from 0).
        index: usize,
        /// What is wrong.
        what: String,
    },
    /// The file has a header and no frame.
    #[error("video file {}: holds no frames", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// A checked Y4M clip: its geometry, rate and where each frame's pixels start.
#[derive(Debug)]
pub struct Y4mClip {
    path: PathBuf,
    /// Size in the file (may be odd).
    file_size: (usize, usize),
    /// Frame rate as the header says it, numerator and denominator.
    rate: (u32, u32),
    /// Byte offset of each frame's pixels.
    offsets: Vec<u64>,
}

impl Y4mClip {
    /// Opens and checks the whole clip (header, and every frame's `FRAME` line and length).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Y4mError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Y4mError::Io { path: path.clone(), source };
        let file = File::open(&path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut reader = BufReader::new(file);
        let header = read_line(&mut reader, MAX_HEADER).map_err(io)?;
        let header_err = |what: String| Y4mError::Header { path: path.clone(), what };
        let Some(header) = header else {
            return Err(header_err("the header line is cut off (no end of line)".into()));
        };
        let Header { size: file_size, rate } =
            parse_header(&String::from_utf8_lossy(&header)).map_err(|e| match e {
                HeaderError::Colourspace(colourspace) => {
                    Y4mError::NotYuv420 { path: path.clone(), colourspace }
                }
                HeaderError::Other(what) => header_err(what),
            })?;
        let need = frame_bytes(file_size) as u64;
        let mut offsets = Vec::new();
        let mut at = header.len() as u64 + 1;
        while at < file_len {
            let index = offsets.len();
            let frame_err = |what: String| Y4mError::Frame { path: path.clone(), index, what };
            let line = read_line(&mut reader, MAX_HEADER).map_err(io)?;
            let Some(line) = line else {
                return Err(frame_err("is cut off in its FRAME line".into()));
            };
            if line != b"FRAME" && !line.starts_with(b"FRAME ") {
                let start = truncate(&String::from_utf8_lossy(&line));
                return Err(frame_err(format!("starts with {start:?}, not FRAME")));
            }
            let data = at + line.len() as u64 + 1;
            if data + need > file_len {
                let have = file_len - data;
                return Err(frame_err(format!("is cut off: {have} of {need} bytes")));
            }
            offsets.push(data);
            at = data + need;
            reader.seek(SeekFrom::Start(at)).map_err(io)?;
        }
        if offsets.is_empty() {
            return Err(Y4mError::Empty { path });
        }
        Ok(Self { path, file_size, rate, offsets })
    }

    /// The size frames go out at: the file's, cropped to even.
    pub fn size(&self) -> (usize, usize) {
        (self.file_size.0 & !1, self.file_size.1 & !1)
    }

    /// The header's frame rate (numerator, denominator).
    pub fn frame_rate(&self) -> (u32, u32) {
        self.rate
    }

    /// Time from one frame to the next.
    pub fn period(&self) -> Duration {
        Duration::from_secs(1) * self.rate.1 / self.rate.0
    }

    /// Frames in the clip.
    pub fn frames(&self) -> usize {
        self.offsets.len()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file for reading frames.
    pub fn reader(self: &Arc<Self>) -> Result<Y4mReader, Y4mError> {
        let file =
            File::open(&self.path).map_err(|source| Y4mError::Io { path: self.path.clone(), source })?;
        Ok(Y4mReader { clip: self.clone(), file, buf: Vec::new() })
    }
}

/// Reads frames of a clip by index.
pub struct Y4mReader {
    clip: Arc<Y4mClip>,
    file: File,
    /// Scratch for an odd-sized frame.
    buf: Vec<u8>,
}

impl Y4mReader {
    /// Frame `index` (modulo the clip's length) as I420 at [`Y4mClip::size`].
    pub fn frame(&mut self, index: usize) -> Result<I420Frame, Y4mError> {
        let clip = &self.clip;
        let index = index % clip.offsets.len();
        let io = |source| Y4mError::Io { path: clip.path.clone(), source };
        self.file.seek(SeekFrom::Start(clip.offsets[index])).map_err(io)?;
        let (w, h) = clip.size();
        let mut frame = I420Frame::black(w, h);
        if clip.file_size == (w, h) {
            // Even: the file's layout is I420's, read in place.
            self.file.read_exact(&mut frame.data).map_err(io)?;
            return Ok(frame);
        }
        self.buf.resize(frame_bytes(clip.file_size), 0);
        self.file.read_exact(&mut self.buf).map_err(io)?;
        let (fw, fh) = clip.file_size;
        let (cw, ch) = (fw.div_ceil(2), fh.div_ceil(2));
        let (y, u, v) = frame.planes_mut();
        let (src_y, rest) = self.buf.split_at(fw * fh);
        let (src_u, src_v) = rest.split_at(cw * ch);
        crop(src_y, fw, y, w);
        crop(src_u, cw, u, w / 2);
        crop(src_v, cw, v, w / 2);
        Ok(frame)
    }
}

/// Copies the first `width` bytes of each `stride`-byte row of `src` into `dst`'s rows.
fn crop(src: &[u8], stride: usize, dst: &mut [u8], width: usize) {
    for (d, s) in dst.chunks_exact_mut(width).zip(src.chunks_exact(stride)) {
        d.copy_from_slice(&s[..width]);
    }
}

/// Bytes of one frame's pixels at this file size (chroma rounded up).
fn frame_bytes((w, h): (usize, usize)) -> usize {
    w * h + 2 * w.div_ceil(2) * h.div_ceil(2)
}

/// Reads one line (without its `\n`) of at most `max` bytes; `None` if the file ends (or the line
/// runs past `max`) before the end of line.
fn read_line(reader: &mut impl BufRead, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    reader.take(max as u64 + 1).read_until(b'\n', &mut line)?;
    Ok((line.pop() == Some(b'\n')).then_some(line))
}

fn truncate(s: &str) -> String {
    s.chars().take(24).collect()
}

/// What a stream header says that we use.
struct Header {
    size: (usize, usize),
    rate: (u32, u32),
}

enum HeaderError {
    Colourspace(String),
    Other(String),
}

/// Size and rate from a stream header line (`YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg`).
fn parse_header(line: &str) -> Result<Header, HeaderError> {
    let other = |what: String| HeaderError::Other(what);
    let mut words = line.split(' ');
    if words.next() != Some("YUV4MPEG2") {
        return Err(other(format!("it starts with {:?}, not YUV4MPEG2", truncate(line))));
    }
    let (mut w, mut h, mut rate) = (None, None, None);
    for word in words.filter(|w| !w.is_empty()) {
        let (tag, value) = word.split_at(1);
        let bad = || other(format!("bad header field {word:?}"));
        match tag {
            "W" => w = Some(value.parse::<usize>().map_err(|_| bad())?),
            "H" => h = Some(value.parse::<usize>().map_err(|_| bad())?),
            "F" => {
                let (n, d) = value.split_once(':').ok_or_else(bad)?;
                rate = Some((n.parse::<u32>().map_err(|_| bad())?, d.parse::<u32>().map_err(|_| bad())?));
            }
            "C" if !matches!(value, "420jpeg" | "420paldv" | "420mpeg2" | "420") => {
                return Err(HeaderError::Colourspace(value.to_owned()));
            }
            // Interlacing, aspect, colour space (4:2:0 here), comments: nothing we need.
            _ => {}
        }
    }
    let (Some(w), Some(h)) = (w, h) else {
        return Err(other("the header has no size (W and H)".into()));
    };
    if !(2..=MAX_SIDE).contains(&w) || !(2..=MAX_SIDE).contains(&h) {
        return Err(other(format!("size {w}x{h} is outside 2x2..{MAX_SIDE}x{MAX_SIDE}")));
    }
    let Some((n, d)) = rate else {
        return Err(other("the header has no frame rate (F, e.g. F30:1)".into()));
    };
    if n == 0 || d == 0 || n > 120 * d || n < d {
        return Err(other(format!("frame rate F{n}:{d} is outside 1..120 fps")));
    }
    Ok(Header { size: (w, h), rate: (n, d) })
}

/// A clip as a camera: its frames in a loop at its own rate.
pub struct Y4mSource {
    clip: Arc<Y4mClip>,
    /// Opened at the first frame (on the media thread, not the engine's task).
    reader: Option<Y4mReader>,
    frame_no: usize,
    deadline: Instant,
}

impl Y4mSource {
    /// A source for a checked clip.
    pub fn new(clip: Arc<Y4mClip>) -> Self {
        Self { clip, reader: None, frame_no: 0, deadline: Instant::now() }
    }
}

impl VideoSource for Y4mSource {
    fn next_frame(&mut self) -> Option<I420Frame> {
        pace(&mut self.deadline, self.clip.period());
        let result = match &mut self.reader {
            Some(reader) => reader.frame(self.frame_no),
            None => self.clip.reader().and_then(|r| self.reader.insert(r).frame(self.frame_no)),
        };
        self.frame_no = (self.frame_no + 1) % self.clip.frames();
        match result {
            Ok(frame) => Some(frame),
            Err(e) => {
                tracing::warn!(%e, "the video file stopped");
                None
            }
        }
    }

    fn fps(&self) -> u32 {
        let (n, d) = self.clip.rate;
        ((n + d / 2) / d).max(1)
    }

    fn describe(&self) -> String {
        let clip = &self.clip;
        let (w, h) = clip.size();
        let cropped = if clip.file_size != (w, h) {
            format!(", cropped from {}x{}", clip.file_size.0, clip.file_size.1)
        } else {
            String::new()
        };
        let (n, d) = clip.rate;
        let fps = if d == 1 { n.to_string() } else { format!("{:.2}", n as f64 / d as f64) };
        let name = clip.path.file_name().unwrap_or(clip.path.as_os_str()).to_string_lossy();
        format!("video file {name} {w}x{h}@{fps}, {} frames looped{cropped}", clip.frames())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the temp dir, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!("peercall-{}-{name}.y4m", std::process::id()));
            std::fs::write(&path, bytes).expect("temp file written");
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A clip of `frames` frames, each plane filled with values from the frame number and position.
    fn clip(header: &str, (w, h): (usize, usize), frames: usize) -> Vec<u8> {
        let mut out = format!("{header}\n").into_bytes();
        for n in 0..frames {
            out.extend_from_slice(if n % 2 == 0 { b"FRAME\n" } else { b"FRAME Ixyz\n" });
            out.extend((0..frame_bytes((w, h))).map(|i| (i * 7 + n * 31) as u8));
        }
        out
    }

    #[test]
    fn a_clip_round_trips_with_its_size_rate_and_frames_and_loops() {
        let file = TempFile::new(
            "ok",
            &clip("YUV4MPEG2 W64 H48 F15:1 Ip A1:1 C420jpeg XYSCSS=420JPEG", (64, 48), 3),
        );
        let clip = Arc::new(Y4mClip::open(&file.0).expect("a good clip opens"));
        assert_eq!((clip.size(), clip.frame_rate(), clip.frames()), ((64, 48), (15, 1), 3));
        assert_eq!(clip.period(), Duration::from_secs(1) / 15);
        let mut reader = clip.reader().expect("reader");
        for n in 0..6 {
            let frame = reader.frame(n).expect("frame");
            let want: Vec<u8> = (0..frame_bytes((64, 48))).map(|i| (i * 7 + n % 3 * 31) as u8).collect();
            assert_eq!(frame.data, want, "frame {n} (looped)");
        }
        let mut source = Y4mSource::new(clip.clone());
        assert_eq!(source.fps(), 15);
        assert!(source.describe().contains("64x48@15, 3 frames looped"), "{}", source.describe());
        let first = source.next_frame().expect("frame 0");
        assert_eq!(first.data, reader.frame(0).expect("frame").data);
    }

    #[test]
    fn every_420_name_and_no_c_at_all_is_accepted_and_ntsc_rates_kept() {
        for c in ["", " C420", " C420paldv", " C420mpeg2"] {
            let file =
                TempFile::new("c420", &clip(&format!("YUV4MPEG2 W32 H32 F30000:1001{c}"), (32, 32), 1));
            let clip = Y4mClip::open(&file.0).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            assert_eq!(clip.frame_rate(), (30000, 1001));
            assert_eq!(Y4mSource::new(Arc::new(clip)).fps(), 30);
        }
    }

    #[test]
    fn an_odd_size_is_cropped_to_even_with_its_chroma_read_rounded_up() {
        let (w, h) = (33, 17);
        let file = TempFile::new("odd", &clip("YUV4MPEG2 W33 H17 F25:1", (w, h), 2));
        let clip = Arc::new(Y4mClip::open(&file.0).expect("opens"));
        assert_eq!(clip.size(), (32, 16));
        let frame = clip.reader().expect("reader").frame(1).expect("frame");
        let source: Vec<u8> = (0..frame_bytes((w, h))).map(|i| (i * 7 + 31) as u8).collect();
        let (y, u, v) = frame.planes();
        assert_eq!(y[32 + 5], source[33 + 5], "luma row 1 starts after the file's 33 bytes");
        let u_start = w * h;
        assert_eq!(u[16 + 3], source[u_start + 17 + 3], "chroma rows are 17 wide in the file");
        assert_eq!(v[16 + 3], source[u_start + 17 * 9 + 17 + 3], "V after 17x9 U samples");
        assert!(Y4mSource::new(clip).describe().contains("cropped from 33x17"));
    }

    fn error(name: &str, bytes: &[u8]) -> (Y4mError, String, PathBuf) {
        let file = TempFile::new(name, bytes);
        let e = Y4mClip::open(&file.0).expect_err("refused");
        let text = e.to_string();
        assert!(text.contains(&*file.0.to_string_lossy()), "names the file: {text}");
        (e, text, file.0.clone())
    }

    #[test]
    fn a_missing_file_is_named() {
        let path = std::env::temp_dir().join("peercall-no-such-clip.y4m");
        let e = Y4mClip::open(&path).expect_err("missing");
        assert!(matches!(e, Y4mError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("peercall-no-such-clip.y4m"), "{e}");
    }

    #[test]
    fn a_truncated_or_bad_header_is_refused_saying_so() {
        let (e, text, _) = error("cut-header", b"YUV4MPEG2 W64 H48 F3");
        assert!(matches!(e, Y4mError::Header { .. }) && text.contains("cut off"), "{text}");
        let (_, text, _) = error("not-y4m", b"RIFF....WAVEfmt \n");
        assert!(text.contains("not YUV4MPEG2"), "{text}");
        let (_, text, _) = error("no-rate", b"YUV4MPEG2 W64 H48\n");
        assert!(text.contains("no frame rate"), "{text}");
        let (_, text, _) = error("no-frames", b"YUV4MPEG2 W64 H48 F30:1\n");
        assert!(text.contains("holds no frames"), "{text}");
    }

    #[test]
    fn a_truncated_frame_is_refused_naming_which() {
        let mut bytes = clip("YUV4MPEG2 W64 H48 F30:1", (64, 48), 3);
        bytes.truncate(bytes.len() - 100);
        let (e, text, _) = error("cut-frame", &bytes);
        assert!(matches!(e, Y4mError::Frame { index: 2, .. }), "{e:?}");
        assert!(text.contains("frame 2 is cut off: 4508 of 4608 bytes"), "{text}");
        let mut bytes = clip("YUV4MPEG2 W64 H48 F30:1", (64, 48), 1);
        bytes.extend_from_slice(b"FRA");
        let (_, text, _) = error("cut-frame-line", &bytes);
        assert!(text.contains("frame 1 is cut off in its FRAME line"), "{text}");
    }

    #[test]
    fn chroma_other_than_420_is_refused_with_the_conversion_to_make() {
        for c in ["444", "422", "mono", "420p10"] {
            let (e, text, _) = error("c444", format!("YUV4MPEG2 W64 H48 F30:1 C{c}\n").as_bytes());
            assert!(matches!(e, Y4mError::NotYuv420 { .. }), "{e:?}");
            assert!(
                text.contains(&format!("colour space C{c} is not 4:2:0")) && text.contains("yuv420p"),
                "{text}"
            );
        }
    }
}
