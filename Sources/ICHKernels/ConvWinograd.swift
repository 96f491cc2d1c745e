// 3x3 stride-1 convolution by Winograd F(2x2, 3x3) in exact integer arithmetic, the way ncnn runs int8 on cores
// without dot products: 16 multiplies per 2x2 outputs and input channel instead of 36.
//
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A     (Lavin & Gray 2016), d = 4x4 input patch, g = 3x3 kernel
//
// B and A hold only 0 and +-1, so with d = x - zero (-255...255) the input transform V = B^T d B stays within
// +-1020 (int16). G holds halves; with G' = 2G the weight transform U' = G' g G'^T = 4 (G g G^T) is an integer
// within +-1143 (int16). The products U' V (exact in int32: vpmaddwd pairs) sum over input channels in int32 on
// the GEMM kernel's vpmaddwd pairs, and Y' = A^T (sum U' V) A = 4 x the exact convolution, so Y'/4 (an exact
// shift) plus the bias is bit for bit the reference accumulator. The sums may wrap in int32 for wide layers
// (256 channels: |sum U'V| <= 256 x 1143 x 1020 = 3.0e8, times 9 in Y'), but every step before the shift is a
// ring operation (adds, subtracts, multiplies) that wrapping int32 computes exactly modulo 2^32, and the true
// Y' = 4Y fits in int32 (|Y| <= inChannels x 9 x 255 x 127 < 2^29 for up to 1024 channels), so the wrapped Y'
// is the true one and the shift is exact.
//
// Blocks of 16 tiles of 2x2 outputs: 16 consecutive tiles of one tile row where the output is at least 32
// wide, else 8 tiles from each of two tile rows (layer3's 16 x 16 at 256 px). Each block: transform its inputs
// for all channels, 16 small GEMMs (one per transform position) into a block of accumulators, transform back
// into the band's accumulators. A band of tile rows (one block high) is the unit of parallel work; each part
// keeps only its current band's accumulators (layer1 at 256 px: 32 KiB instead of a 1 MiB plane) and hands
// them to `finish` (the requantisation) as soon as the band is done, while they are still in cache.

public struct WinogradWeights: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    /// Input channels taken in pairs (an odd count gets a zero weight channel).
    let pairs: Int
    /// For each of the 16 transform positions: for each tile of 4 output channels, for each channel pair,
    /// 4 x (U'[c], U'[c+1]) as int16, the pairs kernel's layout with K = input channels.
    let packed: [Int16]
    /// Which GEMM tile multiplies the transforms (same layouts, same results): `ConvGEMM.tile4x16i16Lanes`
    /// (AArch64's smlal shape) or `ConvGEMM.tile4x16i16` (x86's vpmaddwd pairs). Default: `ConvWinograd.prefersLanes`.
    public let lanes: Bool

    /// Whether a convolution can run this way: 3x3, stride 1, padding 1, at most 1024 input channels (see the
    /// int32 argument above), and whole blocks: an even output height and a width that is a multiple of 32, or
    /// a height that is a multiple of 4 and a width that is a multiple of 16; with the `lanes` GEMM (arm64) also
    /// a height and width that are multiples of 8 (blocks of 4 x 4 tiles: layer4's 8 x 8 at 256 px; never tried
    /// on x86, whose shapes stay as they were).
    public static func applies(_ s: ReferenceKernels.ConvShape, lanes: Bool = false) -> Bool {
        s.kernel == 3 && s.stride == 1 && s.padding == 1 && s.inChannels <= 1024
            && ((s.outHeight % 2 == 0 && s.outWidth % 32 == 0) || (s.outHeight % 4 == 0 && s.outWidth % 16 == 0)
                || (lanes && s.outHeight % 8 == 0 && s.outWidth % 8 == 0))
    }

    /// Whether these weights run a convolution of shape `s` split `parts` ways (`takes` with their GEMM).
    public func runs(_ s: ReferenceKernels.ConvShape, parts: Int = 1) -> Bool { Self.takes(s, lanes: lanes, parts: parts) }

    /// Whether an engine splitting its work `parts` ways runs shape `s` as Winograd on the `lanes` GEMM or not:
    /// where it `applies`, and with the lanes GEMM (arm64) only where there are at least as many bands of tile
    /// rows as parts (the unit of parallel work: layer4 at 256 px is one band, layer3 four), so that a split
    /// engine does not run a layer on one core that the direct kernel would split. x86's rule is unchanged.
    public static func takes(_ s: ReferenceKernels.ConvShape, lanes: Bool, parts: Int) -> Bool {
        applies(s, lanes: lanes) && (!lanes || ConvWinograd.bands(s) >= parts)
    }

    /// `weights` OIHW 3x3, as in `QuantizedConv`.
    public init(weights: [Int8], outChannels: Int, inChannels: Int, lanes: Bool = ConvWinograd.prefersLanes) {
        precondition(weights.count == outChannels * inChannels * 9)
        self.lanes = lanes
        self.outChannels = outChannels
        self.inChannels = inChannels
        let pairs = (inChannels + 1) / 2
        self.pairs = pairs
        let mt = PackedConvWeights.channelTile, tiles = (outChannels + mt - 1) / mt
        let perPosition = tiles * pairs * mt * 2
        /// G' = 2G applied to three values: (2a, a + b + c, a - b + c, 2c).
        @inline(__always) func transform(_ a: Int32, _ b: Int32, _ c: Int32) -> SIMD4<Int32> {
            SIMD4(2 &* a, a &+ b &+ c, a &- b &+ c, 2 &* c)
        }
        var transformed = [Int16](repeating: 0, count: 16 * perPosition)
        weights.withUnsafeBufferPointer { w in
            for o in 0..<outChannels {
                for c in 0..<inChannels {
                    let g = w.baseAddress! + (o * inChannels + c) * 9
                    // Columns of G' g (one per kernel column), then G' over each row of that: U' = G' g G'^T.
                    let t0 = transform(Int32(g[0]), Int32(g[3]), Int32(g[6]))
                    let t1 = transform(Int32(g[1]), Int32(g[4]), Int32(g[7]))
                    let t2 = transform(Int32(g[2]), Int32(g[5]), Int32(g[8]))
                    for i in 0..<4 {
                        let u = transform(t0[i], t1[i], t2[i])
                        for j in 0..<4 {
                            transformed[(i * 4 + j) * perPosition + ((o / mt * pairs + c / 2) * mt + o % mt) * 2 + (c & 1)] = Int16(u[j])
                        }
                    }
                }
            }
        }
        packed = transformed
    }

    /// Bytes of scratch `ConvWinograd.convAccumulate` needs when split `parts` ways: the input with a border of
    /// one zero-point pixel, channel pairs interleaved and columns split by parity (`ConvWinograd.splitPairs`),
    /// then per part one block of transformed inputs and one of accumulators.
    public func scratchBytes(_ s: ReferenceKernels.ConvShape, parts: Int = 1) -> Int {
        splitBytes(s) + parts * partBytes(s)
    }

    /// The split input's bytes, rounded up to 64.
    func splitBytes(_ s: ReferenceKernels.ConvShape) -> Int {
        (pairs * (s.inHeight + 2) * ConvWinograd.splitRowBytes(s.inWidth) + 63) / 64 * 64
    }

    /// One part's buffers: a block's transformed inputs (16 positions x channel pairs x 16 tiles x 2 int16),
    /// its GEMM accumulators (16 positions x output channels rounded up to 4 x 16 tiles, int32), and a band's
    /// output accumulators (32 outputs per block, int32); in ResNet18 32-128, 64-256 and 32-64 KiB.
    var blockInputs: Int { 16 * pairs * 32 }
    var blockAccumulators: Int { 16 * ((outChannels + 3) / 4 * 4) * 16 }
    func bandPixels(_ s: ReferenceKernels.ConvShape) -> Int { 2 * ConvWinograd.bandRows(s) * s.outWidth }
    func partBytes(_ s: ReferenceKernels.ConvShape) -> Int { blockInputs * 2 + blockAccumulators * 4 + outChannels * bandPixels(s) * 4 }
}

public enum ConvWinograd {
    /// Whether an engine whose direct convolutions use `kernel` runs the 3x3 stride-1 ones as Winograd where the
    /// shape allows: always with the pairs kernel (x86: layer1 2.5 -> 2.1 ms, layer2 2.35 -> 1.38 ms per
    /// convolution, bench/README.md); with the dot kernel only where it multiplies in int16 products (arm64
    /// without `sdot`, the Raspberry Pi 4: Winograd's 2.25x fewer multiplies at 4 smlal MACs per cycle beat 5.6
    /// direct MACs per cycle), not with `sdot` (Pi 5: 32 MACs per cycle direct; bench/README.md, "ARM").
    public static func preferred(with kernel: ConvKernel) -> Bool {
        kernel == .pairs || (kernel == .dot && ConvDot.prefersInt16Products)
    }

    /// Whether the GEMM runs on `ConvGEMM.tile4x16i16Lanes` by default: on arm64.
    public static var prefersLanes: Bool {
        #if arch(arm64)
        true
        #else
        false
        #endif
    }

    /// Tile rows per block: 1 where a tile row holds whole 16-tile blocks (output width a multiple of 32), else 2
    /// (8 tiles from each of two tile rows) where the width is a multiple of 16 and the height of 4, else 4.
    /// Bands of tile rows, the unit `convAccumulate` splits over its parts.
    public static func bands(_ s: ReferenceKernels.ConvShape) -> Int { s.outHeight / 2 / bandRows(s) }

    static func bandRows(_ s: ReferenceKernels.ConvShape) -> Int {
        s.outWidth % 32 == 0 ? 1 : s.outWidth % 16 == 0 && s.outHeight % 4 == 0 ? 2 : 4
    }

    /// Accumulators exactly as `ReferenceKernels.convAccumulate` computes them, for shapes where
    /// `WinogradWeights.applies`, delivered band by band: `finish(pixels, acc)` gets the accumulators of the
    /// output pixels `pixels` (whole rows), channel-major with `pixels.count` per channel, on the thread that
    /// computed them, and must be done with them when it returns. `scratch` holds `w.scratchBytes(s, parts:
    /// parallel.count)` bytes. `parallel` splits channel pairs (the split copy), then bands of tile rows.
    public static func convAccumulate(_ s: ReferenceKernels.ConvShape, input: UnsafePointer<UInt8>, inZero: Int32,
                                      weights w: WinogradWeights, bias: UnsafePointer<Int32>, scratch: UnsafeMutablePointer<UInt8>,
                                      parallel: Parallel = .serial, finish: (Range<Int>, UnsafePointer<Int32>) -> Void) {
        precondition(w.runs(s) && w.inChannels == s.inChannels && w.outChannels == s.outChannels)
        let oh = s.outHeight, ow = s.outWidth
        // Tiles per block segment (16, 8 or 4), tile rows per block, and blocks per band of those tile rows.
        let bandRows = bandRows(s), segment = 16 / bandRows, blocksPerBand = ow / 2 / segment
        let bandPixels = w.bandPixels(s)
        // Where a block's second 8 tiles are, from its first 8 (or each 4 from the previous 4, `quarters`): in the
        // split input (bytes) and in the output.
        let inputSecond = segment == 16 ? 16 : 2 * splitRowBytes(s.inWidth), outputSecond = segment == 16 ? 16 : 2 * ow
        let quarters = segment == 4
        let pairs = w.pairs, mt = PackedConvWeights.channelTile, channelTiles = (s.outChannels + mt - 1) / mt
        let perPosition = channelTiles * pairs * mt * 2
        // The input bordered, paired and split by column parity: every block then reads whole vectors.
        splitPairs(s, input: input, zero: UInt8(truncatingIfNeeded: inZero), out: scratch, parallel: parallel)
        let split = UnsafePointer(scratch)
        w.packed.withUnsafeBufferPointer { packed in
            parallel.parts(oh / 2 / bandRows) { part, bands in
                let buffers = UnsafeMutableRawPointer(scratch + w.splitBytes(s) + part * w.partBytes(s))
                let columns = buffers.assumingMemoryBound(to: Int16.self)
                let m = (buffers + w.blockInputs * 2).assumingMemoryBound(to: Int32.self)
                let acc = (buffers + w.blockInputs * 2 + w.blockAccumulators * 4).assumingMemoryBound(to: Int32.self)
                // One copy of the band loop per GEMM tile and block shape, each with its choice as a constant (x86's
                // pairs copy is then the code it was before the lanes tile and the 4 x 4-tile blocks existed).
                @inline(__always) func run(lanes: Bool, narrow: Bool) {
                    for band in bands {
                        let ty = band * bandRows
                        for bx in 0..<blocksPerBand {
                            transformInputs(s, split: split, zero: inZero, ty: ty, tx0: bx * segment, second: inputSecond,
                                            quarters: narrow, pairs: pairs, out: columns)
                            for xi in 0..<16 {
                                let v = UnsafePointer(columns + xi * pairs * 32)
                                for tile in 0..<channelTiles {
                                    let weights = packed.baseAddress! + xi * perPosition + tile * pairs * mt * 2
                                    let out = m + (xi * channelTiles + tile) * mt * 16
                                    if lanes {
                                        ConvGEMM.tile4x16i16Lanes(pairs: pairs, weights: weights, columns: v, out: out)
                                    } else {
                                        ConvGEMM.tile4x16i16(pairs: pairs, weights: weights, columns: v, out: out)
                                    }
                                }
                            }
                            transformOutputs(s, m: UnsafePointer(m), channelTiles: channelTiles, bias: bias,
                                             acc: acc + 2 * bx * segment, plane: bandPixels, second: outputSecond,
                                             quarters: narrow)
                        }
                        finish((band * bandPixels)..<((band + 1) * bandPixels), UnsafePointer(acc))
                    }
                }
                if !w.lanes {
                    run(lanes: false, narrow: false)
                } else if quarters {
                    run(lanes: true, narrow: true)
                } else {
                    run(lanes: true, narrow: false)
                }
            }
        }
    }

    /// Bytes of one row of `splitPairs`' layout for an input `width` wide (even): (width / 2 + 1) units of the
    /// bordered row's even columns, then as many of its odd columns, 2 bytes each.
    static func splitRowBytes(_ width: Int) -> Int { 4 * (width / 2 + 1) }

    /// The input with a one-pixel border of the zero point (0 once the zero point is taken off, the reference's
    /// padding), in the layout the input transform loads whole vectors from: for channel pair p and bordered row
    /// y, the 16-bit units (x[2p][y][x], x[2p + 1][y][x]) of the bordered columns x = 0, 2, 4, ... then of
    /// x = 1, 3, 5, ... (bordered column x is input column x - 1). A tile's patch column q over 16 consecutive
    /// tiles is then 16 consecutive units. Channel 2p + 1 of an odd channel count repeats channel 2p (its
    /// weights are 0).
    static func splitPairs(_ s: ReferenceKernels.ConvShape, input: UnsafePointer<UInt8>, zero: UInt8, out: UnsafeMutablePointer<UInt8>,
                           parallel: Parallel) {
        let h = s.inHeight, wdt = s.inWidth, half = wdt / 2, rowBytes = splitRowBytes(wdt)
        let pairs = (s.inChannels + 1) / 2
        parallel(pairs) { range in
            for p in range {
                let plane = out + p * (h + 2) * rowBytes
                plane.update(repeating: zero, count: rowBytes)
                (plane + (h + 1) * rowBytes).update(repeating: zero, count: rowBytes)
                for y in 0..<h {
                    let a = input + ((2 * p) * h + y) * wdt
                    let b = 2 * p + 1 < s.inChannels ? a + h * wdt : a
                    let even = plane + (y + 1) * rowBytes, odd = even + 2 * (half + 1)
                    even[0] = zero; even[1] = zero
                    odd[2 * half] = zero; odd[2 * half + 1] = zero
                    // Input column 2m is bordered column 2m + 1 (odd, unit m); 2m + 1 is 2m + 2 (even, unit m + 1).
                    for m in 0..<half {
                        odd[2 &* m] = a[2 &* m]; odd[2 &* m &+ 1] = b[2 &* m]
                        even[2 &* m &+ 2] = a[2 &* m &+ 1]; even[2 &* m &+ 3] = b[2 &* m &+ 1]
                    }
                }
            }
        }
    }

    /// V = B^T d B for 16 tiles (ty, tx0..tx0+15) and every input channel, channel pairs interleaved:
    /// out[(xi x pairs + c/2) x 32 + t x 2 + (c & 1)].
    ///
    /// Tile t's 4x4 patch covers bordered rows 2 ty...2 ty + 3 and columns 2 (tx0 + t)...+3; in the split
    /// layout its column q over 8 tiles is 16 consecutive bytes (units tx0 + q / 2... of parity q & 1), already
    /// in the pair layout the GEMM reads; the block's other 8 tiles are `second` bytes on (the next 8 of the
    /// same row, or the same 8 of the next tile row). Widened to int16 lanes minus the zero point, the transform is
    /// plain vector adds. (Assembling the patches byte by byte here spent 60% of the convolution.)
    @inline(__always)
    static func transformInputs(_ s: ReferenceKernels.ConvShape, split: UnsafePointer<UInt8>, zero: Int32, ty: Int, tx0: Int,
                                second: Int, quarters: Bool, pairs: Int, out: UnsafeMutablePointer<Int16>) {
        let rowBytes = splitRowBytes(s.inWidth), oddStart = rowBytes / 2, plane = (s.inHeight + 2) * rowBytes
        let z = SIMD32<Int16>(repeating: Int16(truncatingIfNeeded: zero))
        // Column q's bytes within a split row.
        let c0 = 2 * tx0, c1 = oddStart + 2 * tx0, c2 = 2 * tx0 + 2, c3 = oddStart + 2 * tx0 + 2
        @inline(__always) func lanes(_ p: UnsafePointer<UInt8>) -> SIMD32<Int16> {
            if quarters {
                // 4 tiles (8 bytes) from each of four tile rows `second` apart.
                var r = SIMD32<Int16>()
                for k in 0..<4 {
                    let q = UnsafeRawPointer(p + k &* second).loadUnaligned(as: SIMD8<UInt8>.self)
                    for i in 0..<8 { r[8 &* k &+ i] = Int16(q[i]) }
                }
                return r &- z
            }
            // Element loops: LLVM makes them vpmovzxbw (the SIMD conversion initialisers become calls).
            let first = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt8>.self)
            let last = UnsafeRawPointer(p + second).loadUnaligned(as: SIMD16<UInt8>.self)
            var r = SIMD32<Int16>()
            for i in 0..<16 { r[i] = Int16(first[i]) }
            for i in 0..<16 { r[16 + i] = Int16(last[i]) }
            return r &- z
        }
        typealias Row = (SIMD32<Int16>, SIMD32<Int16>, SIMD32<Int16>, SIMD32<Int16>)
        for p in 0..<pairs {
            let rows = split + p * plane + (2 * ty) * rowBytes
            @inline(__always) func d(_ r: Int) -> Row {
                let row = rows + r * rowBytes
                return (lanes(row + c0), lanes(row + c1), lanes(row + c2), lanes(row + c3))
            }
            let d0 = d(0), d1 = d(1), d2 = d(2), d3 = d(3)
            // t = B^T d over rows, then V = t B over columns, stored per transform position i x 4 + j.
            @inline(__always) func put(_ i: Int, _ t: Row) {
                let dst = out + (i * 4 * pairs + p) * 32
                @inline(__always) func at(_ j: Int, _ v: SIMD32<Int16>) {
                    UnsafeMutableRawPointer(dst + j * pairs * 32).storeBytes(of: v, as: SIMD32<Int16>.self)
                }
                at(0, t.0 &- t.2)
                at(1, t.1 &+ t.2)
                at(2, t.2 &- t.1)
                at(3, t.1 &- t.3)
            }
            put(0, (d0.0 &- d2.0, d0.1 &- d2.1, d0.2 &- d2.2, d0.3 &- d2.3))
            put(1, (d1.0 &+ d2.0, d1.1 &+ d2.1, d1.2 &+ d2.2, d1.3 &+ d2.3))
            put(2, (d2.0 &- d1.0, d2.1 &- d1.1, d2.2 &- d1.2, d2.3 &- d1.3))
            put(3, (d1.0 &- d3.0, d1.1 &- d3.1, d1.2 &- d3.2, d1.3 &- d3.3))
        }
    }

    /// Y = A^T M A / 4 + bias for the block's 16 tiles and every output channel, into the accumulators: `acc`
    /// is output channel 0's first output of the block, channels are `plane` apart, the second 8 tiles'
    /// outputs are `second` further.
    @inline(__always)
    static func transformOutputs(_ s: ReferenceKernels.ConvShape, m: UnsafePointer<Int32>, channelTiles: Int,
                                 bias: UnsafePointer<Int32>, acc: UnsafeMutablePointer<Int32>, plane: Int, second: Int,
                                 quarters: Bool) {
        let ow = s.outWidth, mt = PackedConvWeights.channelTile
        for o in 0..<s.outChannels {
            @inline(__always) func at(_ xi: Int) -> SIMD16<Int32> {
                UnsafeRawPointer(m + ((xi * channelTiles + o / mt) * mt + o % mt) * 16).loadUnaligned(as: SIMD16<Int32>.self)
            }
            // s = A^T M over rows (two rows), then y = s A over columns.
            let s0 = at(0) &+ at(4) &+ at(8), s1 = at(1) &+ at(5) &+ at(9)
            let s2 = at(2) &+ at(6) &+ at(10), s3 = at(3) &+ at(7) &+ at(11)
            let r0 = at(4) &- at(8) &- at(12), r1 = at(5) &- at(9) &- at(13)
            let r2 = at(6) &- at(10) &- at(14), r3 = at(7) &- at(11) &- at(15)
            let b = SIMD16<Int32>(repeating: bias[o])
            put(((s0 &+ s1 &+ s2) &>> 2) &+ b, ((s1 &- s2 &- s3) &>> 2) &+ b, to: acc + o * plane, second: second, quarters: quarters)
            put(((r0 &+ r1 &+ r2) &>> 2) &+ b, ((r1 &- r2 &- r3) &>> 2) &+ b, to: acc + o * plane + ow, second: second, quarters: quarters)
        }
    }

    /// 16 tiles' left and right outputs of one row, interleaved into 16 consecutive accumulators for the first 8
    /// tiles and 16 more `second` further for the last 8. Built from lanes, 8 at a time: LLVM turns that into
    /// unpack instructions (a store loop stayed scalar).
    /// `quarters`: each 4 tiles' 8 outputs `second` after the previous 4's.
    @inline(__always)
    static func put(_ left: SIMD16<Int32>, _ right: SIMD16<Int32>, to dst: UnsafeMutablePointer<Int32>, second: Int, quarters: Bool) {
        for q in 0..<4 {
            let k = 4 * q
            let v = SIMD8<Int32>(left[k], right[k], left[k + 1], right[k + 1], left[k + 2], right[k + 2], left[k + 3], right[k + 3])
            UnsafeMutableRawPointer(dst + (quarters ? q * second : (q / 2) * second + (q % 2) * 8)).storeBytes(of: v, as: SIMD8<Int32>.self)
        }
    }
}
