import Foundation
import ICHIngest
import ICHPreprocessing
import ICHTestSupport
import Testing

@Suite struct PreprocessingTests {
    /// A spec that leaves the numbers easy to follow: no crop, no normalisation.
    static func plain(size: Int, crop: HeadCrop? = nil) -> Preprocessing {
        Preprocessing(outputSize: size, headCrop: crop, mean: [0, 0, 0], std: [1, 1, 1])
    }

    static func image(_ width: Int, _ height: Int, _ value: (Int, Int) -> Float) -> HounsfieldImage {
        var pixels = [Float]()
        for y in 0..<height { for x in 0..<width { pixels.append(value(x, y)) } }
        return HounsfieldImage(width: width, height: height, pixels: pixels)
    }

    @Test func windowValues() {
        #expect(Window.brain.value(0) == 0)
        #expect(Window.brain.value(40) == 0.5)
        #expect(Window.brain.value(80) == 1)
        #expect(Window.brain.value(-10) == 0)
        #expect(Window.brain.value(100) == 1)
        #expect(Window.subdural.value(30) == 0.25)
        #expect(Window.bone.value(600) == 0.5)
        #expect(Window.bone.value(-800) == 0)
        #expect(!Window.brain.contains(0) && Window.brain.contains(0.5) && !Window.brain.contains(80))
    }

    @Test func brainCoverageCountsStrictlyInside() {
        // 10x10: 25 pixels of brain, 10 at exactly 0 HU (window edge, not inside), the rest air.
        let img = Self.image(10, 10) { x, y in y < 5 && x < 5 ? 40 : (y == 9 ? 0 : -1000) }
        let pre = SlicePreprocessor(.rsna)
        #expect(pre.brainCoverage(img) == 0.25)
        #expect(pre.assess(img) == .score(brainCoverage: 0.25))
        let blank = Self.image(10, 10) { _, _ in -1000 }
        #expect(pre.assess(blank) == .skip(brainCoverage: 0, threshold: Preprocessing.defaultMinBrainCoverage))
        #expect(pre.assess(blank).reason?.contains("below") == true)
    }

    @Test func cropBoxIsTheMaskBoundingBoxPaddedToSquare() {
        // Brain-window rectangle x 10..<30, y 20..<50 in a 64x64 slice; no blur, full-resolution mask.
        let img = Self.image(64, 64) { x, y in (10..<30).contains(x) && (20..<50).contains(y) ? 40 : -1000 }
        let spec = Self.plain(size: 32, crop: HeadCrop(blurSigma: 0, threshold: 0.1, analysisSize: 64))
        let input = SlicePreprocessor(spec).prepare(img)
        #expect(input.crop == CropBox(x: 5, y: 20, side: 30))
    }

    @Test func boneDoesNotWidenTheCrop() {
        // Bone (above the brain window) is removed from the mask, as fastai's mask_from_blur(remove_max) did.
        let img = Self.image(64, 64) { x, y in
            if (10..<30).contains(x) && (20..<50).contains(y) { return 40 }
            return x > 50 ? 1500 : -1000
        }
        let spec = Self.plain(size: 32, crop: HeadCrop(blurSigma: 0, threshold: 0.1, analysisSize: 64))
        #expect(SlicePreprocessor(spec).prepare(img).crop == CropBox(x: 5, y: 20, side: 30))
    }

    @Test func blurDropsThinStructures() {
        // A one-pixel line of table-like soft tissue far from the head must not stretch the box.
        let img = Self.image(128, 128) { x, y in
            let dx = Double(x) - 64, dy = Double(y) - 60
            if dx * dx + dy * dy < 40 * 40 { return 35 }
            return y == 120 ? 40 : -1000
        }
        let crop = SlicePreprocessor(.rsna).prepare(img).crop
        #expect(crop.y + crop.side < 118, "box \(crop) reached the line")
        #expect(abs((crop.x + crop.side / 2) - 64) <= 3 && abs((crop.y + crop.side / 2) - 60) <= 3)
    }

    @Test func identitySizeKeepsExactWindowValuesAndNormalises() {
        let img = Self.image(8, 8) { x, y in Float(x * 10 + y * 100 - 300) }
        let spec = Preprocessing(outputSize: 8, headCrop: nil)
        let input = SlicePreprocessor(spec).prepare(img)
        #expect(input.crop == CropBox(x: 0, y: 0, side: 8))
        for c in 0..<3 {
            for p in 0..<64 {
                let expected = (spec.windows[c].value(img.pixels[p]) - spec.mean[c]) / spec.std[c]
                #expect(abs(input.tensor[c * 64 + p] - expected) < 1e-6)
            }
        }
    }

    @Test func shrinkingAveragesAreas() {
        let img = Self.image(16, 16) { x, y in Float((x * 7 + y * 13) % 80) }  // all inside the brain window
        let input = SlicePreprocessor(Self.plain(size: 8)).prepare(img)
        for j in 0..<8 {
            for i in 0..<8 {
                var sum: Float = 0
                for dy in 0..<2 { for dx in 0..<2 { sum += Window.brain.value(img[2 * i + dx, 2 * j + dy]) } }
                #expect(abs(input.tensor[j * 8 + i] - sum / 4) < 1e-6)
            }
        }
        // A non-integer ratio: 12 -> 8 covers 1.5 source pixels per output; the mean is preserved.
        let odd = Self.image(12, 12) { x, y in Float(x * 5 + y) }
        let shrunk = SlicePreprocessor(Self.plain(size: 8)).prepare(odd)
        let sourceMean = odd.pixels.map { Window.brain.value($0) }.reduce(0, +) / 144
        let outMean = shrunk.tensor[0..<64].reduce(0, +) / 64
        #expect(abs(sourceMean - outMean) < 1e-5)
    }

    @Test func growingIsBilinear() {
        let img = Self.image(4, 4) { x, _ in Float(x * 20) }   // brain values 0, 0.25, 0.5, 0.75
        let input = SlicePreprocessor(Self.plain(size: 8)).prepare(img)
        let row = Array(input.tensor[0..<8])
        let expected: [Float] = [0, 0.0625, 0.1875, 0.3125, 0.4375, 0.5625, 0.6875, 0.75]
        for (a, b) in zip(row, expected) { #expect(abs(a - b) < 1e-6) }
    }

    @Test func nonSquareSlicesArePaddedWithZero() {
        let img = Self.image(8, 4) { _, _ in 40 }
        let input = SlicePreprocessor(Self.plain(size: 8)).prepare(img)
        #expect(input.crop == CropBox(x: 0, y: -2, side: 8))
        for y in 0..<8 {
            let expected: Float = (2..<6).contains(y) ? 0.5 : 0
            #expect(input.tensor[y * 8 + 3] == expected, "row \(y)")
        }
    }

    @Test func windowedEightBitSlicesMatchTheHounsfieldPath() {
        let head = Fixtures.head(size: 96, bleed: true)
        let spec = Preprocessing(outputSize: 64, headCrop: HeadCrop())
        let pre = SlicePreprocessor(spec)
        var rgb = [UInt8]()
        for v in head.pixels {
            for w in spec.windows { rgb.append(UInt8((w.value(v) * 255).rounded())) }
        }
        let jpegLike = Image8(width: 96, height: 96, channels: 3, pixels: rgb)
        let a = pre.prepare(head), b = pre.prepare(jpegLike)
        #expect(a.crop == b.crop)
        let worst = zip(a.tensor, b.tensor).map { abs($0 - $1) }.max()!
        #expect(worst < 0.6 / 255 / 0.224, "largest difference \(worst)")
        #expect(abs(pre.brainCoverage(head) - pre.brainCoverage(jpegLike)) < 0.02)
    }

    @Test func syntheticHeadFillsTheCrop() {
        let head = Fixtures.head(size: 512)
        let input = SlicePreprocessor(.rsna).prepare(head)
        #expect(input.tensor.count == 3 * 256 * 256)
        // The head spans 0.86 of the side vertically (radius 0.43); the box must hold it with a small margin.
        #expect(input.crop.side >= Int(0.86 * 512) && input.crop.side <= Int(0.95 * 512), "\(input.crop)")
        #expect(abs(input.crop.y + input.crop.side / 2 - 256) <= 8)
    }

    @Test func specValidation() {
        #expect(Preprocessing.rsna.problem == nil)
        var bad = Preprocessing.rsna
        bad.std = [1, 0, 1]
        #expect(bad.problem != nil)
        bad = Preprocessing.rsna
        bad.mean = [0.5]
        #expect(bad.problem != nil)
    }

    @Test func specRoundTripsThroughJSONWithStableKeys() throws {
        let data = try JSONEncoder().encode(Preprocessing.rsna)
        let text = String(decoding: data, as: UTF8.self)
        for key in ["\"output_size\"", "\"min_brain_coverage\"", "\"head_crop\"", "\"windows\"", "\"coverage_window\""] {
            #expect(text.contains(key))
        }
        #expect(try JSONDecoder().decode(Preprocessing.self, from: data) == .rsna)
    }
}

/// A real CT slice from outside the project (pydicom's CT_small.dcm), checked against pydicom-computed values.
@Suite(.enabled(if: PublicDicomFiles.available, "run scripts/fetch-test-data.sh (make test does)"))
struct PublicSlicePreprocessingTests {
    @Test func ctSmallCoverageAndInput() throws {
        let data = try Data(contentsOf: PublicDicomFiles.directory.appendingPathComponent("oracle.json"))
        let oracle = try #require((try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]])?["CT_small.dcm"])
        let expectedCoverage = try #require(oracle["brain_coverage"] as? Double)
        let slice = try DicomSliceReader(path: PublicDicomFiles.path("CT_small.dcm")).readFrame(0)
        let pre = SlicePreprocessor(.rsna)
        #expect(abs(pre.brainCoverage(slice.image) - expectedCoverage) < 1e-12)
        let input = pre.prepare(slice.image)
        #expect(input.tensor.count == 3 * 256 * 256)
        #expect(input.tensor.allSatisfy { $0.isFinite })
        // The crop stays on the 128x128 slice (padding at most a few pixels) and is square.
        #expect(input.crop.side <= 136 && input.crop.side >= 64, "\(input.crop)")
        // Channel values stay inside the normalised range of [0, 1] windows.
        for c in 0..<3 {
            let lo = (0 - Preprocessing.rsna.mean[c]) / Preprocessing.rsna.std[c]
            let hi = (1 - Preprocessing.rsna.mean[c]) / Preprocessing.rsna.std[c]
            #expect(input.tensor[(c * 65536)..<((c + 1) * 65536)].allSatisfy { $0 >= lo - 1e-5 && $0 <= hi + 1e-5 })
        }
    }
}
