// 3x3 stride-1 convolution by Winograd F(2x2, 3x3) in exact integer arithmetic, the way ncnn runs int8 on cores
// without dot products: 16 multiplies per 2x2 outputs and input channel instead of 36.
//
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A     (Lavin & Gray 2016), d = 4x4 input patch, g = 3x3 kernel
//
// B and A hold only 0 and +-1, so with d = x - zero (-255...255) the input transform V = B^T d B stays within
// +-1020 (int16). G holds halves; with G' = 2G the weight transform U' = G' g G'^T = 4 (G g G^T) is an integer
// within +-1143 (int16). The products U' V sum over input channels in int32 on the same vpmaddwd pairs as the
// GEMM kernel, and Y' = A^T (sum U' V) A = 4 x the exact convolution, so Y'/4 (an exact shift) plus the bias is
// bit for bit the reference accumulator. Every intermediate stays far inside int32 for the layers this is used
// on (64-128 input channels: |sum U'V| <= 128 x 1143 x 1020 = 1.5e8, Y' <= 9 x that).
//
// Tiles of 2x2 outputs are processed a tile row at a time (the unit of parallel work, so each finished range
// of tile rows is a contiguous range of output rows for the requantisation), 16 tiles per block: transform the
// block's inputs for all channels, 16 small GEMMs (one per transform position) into a block of accumulators,
// transform back into the output accumulators.

public struct WinogradWeights: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    /// Input channels taken in pairs (an odd count gets a zero weight channel).
    let pairs: Int
    /// For each of the 16 transform positions: for each tile of 4 output channels, for each channel pair,
    /// 4 x (U'[c], U'[c+1]) as int16, the pairs kernel's layout with K = input channels.
    let packed: [Int16]

    /// Whether a convolution can run this way: 3x3, stride 1, padding 1, an even output height and an output
    /// width that is a multiple of 32 (so a tile row is whole 16-tile blocks).
    public static func applies(_ s: ReferenceKernels.ConvShape) -> Bool {
        s.kernel == 3 && s.stride == 1 && s.padding == 1 && s.outHeight % 2 == 0 && s.outWidth % 32 == 0
            && s.inChannels <= 256
    }

    /// `weights` OIHW 3x3, as in `QuantizedConv`.
    public init(weights: [Int8], outChannels: Int, inChannels: Int) {
        precondition(weights.count == outChannels * inChannels * 9)
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

    /// int16 scratch `ConvWinograd.convAccumulate` needs: the transformed inputs of every 16-tile block.
    public func scratchCount(_ s: ReferenceKernels.ConvShape) -> Int {
        (s.outHeight / 2) * (s.outWidth / 2) / 16 * 16 * pairs * 16 * 2
    }

    /// int32 accumulators of one block: 16 positions x output channels (rounded up to 4) x 16 tiles.
    var blockAccumulators: Int { 16 * ((outChannels + 3) / 4 * 4) * 16 }
}

public enum ConvWinograd {
    /// Accumulators exactly as `ReferenceKernels.convAccumulate` computes them, for shapes where
    /// `WinogradWeights.applies`. `scratch` holds `w.scratchCount(s)` int16 values. `parallel` splits tile
    /// rows; `finish(pixels)` runs after the accumulators of those output pixels are complete.
    public static func convAccumulate(_ s: ReferenceKernels.ConvShape, input: UnsafePointer<UInt8>, inZero: Int32,
                                      weights w: WinogradWeights, bias: UnsafePointer<Int32>,
                                      acc: UnsafeMutablePointer<Int32>, scratch: UnsafeMutablePointer<Int16>,
                                      parallel: (Int, (Range<Int>) -> Void) -> Void = { $1(0..<$0) },
                                      finish: ((Range<Int>) -> Void)? = nil) {
        precondition(WinogradWeights.applies(s) && w.inChannels == s.inChannels && w.outChannels == s.outChannels)
        let oh = s.outHeight, ow = s.outWidth, tileRows = oh / 2, blocksPerRow = ow / 32
        let pairs = w.pairs, mt = PackedConvWeights.channelTile, channelTiles = (s.outChannels + mt - 1) / mt
        let perPosition = channelTiles * pairs * mt * 2
        let blockColumns = 16 * pairs * 16 * 2  // int16 per block: 16 positions x pairs x 16 tiles x 2
        w.packed.withUnsafeBufferPointer { packed in
            parallel(tileRows) { rows in
                // One block of accumulators per parallel part (64-128 KiB).
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: w.blockAccumulators) { block in
                    let m = block.baseAddress!
                    for ty in rows {
                        for bx in 0..<blocksPerRow {
                            let columns = scratch + (ty * blocksPerRow + bx) * blockColumns
                            transformInputs(s, input: input, zero: inZero, ty: ty, tx0: bx * 16, pairs: pairs, out: columns)
                            for xi in 0..<16 {
                                let v = UnsafePointer(columns + xi * pairs * 32)
                                for tile in 0..<channelTiles {
                                    ConvGEMM.tile4x16i16(pairs: pairs, weights: packed.baseAddress! + xi * perPosition + tile * pairs * mt * 2,
                                                         columns: v, out: m + (xi * channelTiles + tile) * mt * 16)
                                }
                            }
                            transformOutputs(s, m: UnsafePointer(m), channelTiles: channelTiles, bias: bias, acc: acc, ty: ty, tx0: bx * 16)
                        }
                    }
                }
                finish?((rows.lowerBound * 2 * ow)..<(rows.upperBound * 2 * ow))
            }
        }
    }

    /// V = B^T d B for 16 tiles (ty, tx0..tx0+15) and every input channel, channel pairs interleaved:
    /// out[(xi x pairs + c/2) x 32 + t x 2 + (c & 1)].
    ///
    /// Per channel and input row, the 34 pixels the block's tiles read are copied once (minus the zero point;
    /// 0 in the padding) and split into odd and even columns: tile t's four columns are then odd[t], even[t],
    /// odd[t + 1], even[t + 1], 16 tiles per vector. The two channels of a pair are transformed together so
    /// that each transform position is stored as 32 consecutive interleaved values.
    @inline(__always)
    static func transformInputs(_ s: ReferenceKernels.ConvShape, input: UnsafePointer<UInt8>, zero: Int32, ty: Int, tx0: Int,
                                pairs: Int, out: UnsafeMutablePointer<Int16>) {
        let h = s.inHeight, wdt = s.inWidth, first = 2 * tx0 - 1, z = Int16(truncatingIfNeeded: zero)
        // Per channel of the pair: 4 rows x (34 copied values, then 17 odd and 17 even columns), and t = B^T d.
        withUnsafeTemporaryAllocation(of: Int16.self, capacity: 2 * 4 * (34 + 34)) { buffer in
            withUnsafeTemporaryAllocation(of: SIMD16<Int16>.self, capacity: 2 * 16) { tBuffer in
                let base = buffer.baseAddress!, t = tBuffer.baseAddress!
                for p in 0..<pairs {
                    for half in 0..<2 {
                        let c = 2 * p + half
                        let rows = base + half * 4 * 68
                        for r in 0..<4 {
                            let seg = rows + r * 68, odd = seg + 34, even = odd + 17
                            let iy = 2 * ty - 1 + r
                            if c < s.inChannels && iy >= 0 && iy < h {
                                let row = input + (c * h + iy) * wdt
                                // Columns outside the image are padding (0 after the zero point is taken off).
                                let lo = max(0, -first), hi = min(34, wdt - first)
                                for k in 0..<lo { seg[k] = 0 }
                                for k in lo..<hi { seg[k] = Int16(row[first + k]) &- z }
                                for k in max(lo, hi)..<34 { seg[k] = 0 }
                            } else {
                                for k in 0..<34 { seg[k] = 0 }
                            }
                            for k in 0..<17 {
                                odd[k] = seg[2 * k]
                                even[k] = seg[2 * k + 1]
                            }
                        }
                        @inline(__always) func d(_ r: Int, _ q: Int) -> SIMD16<Int16> {
                            let odd = rows + r * 68 + 34, even = odd + 17
                            let column = q & 1 == 0 ? odd : even
                            return UnsafeRawPointer(column + q / 2).loadUnaligned(as: SIMD16<Int16>.self)
                        }
                        // t = B^T d over rows.
                        let tt = t + half * 16
                        for q in 0..<4 {
                            let d0 = d(0, q), d1 = d(1, q), d2 = d(2, q), d3 = d(3, q)
                            tt[q] = d0 &- d2
                            tt[4 + q] = d1 &+ d2
                            tt[8 + q] = d2 &- d1
                            tt[12 + q] = d1 &- d3
                        }
                    }
                    // V = t B over columns, both channels, stored interleaved.
                    for i in 0..<4 {
                        let a = t + i * 4, b = t + 16 + i * 4
                        store(a[0] &- a[2], b[0] &- b[2], position: i * 4, pair: p, pairs: pairs, out: out)
                        store(a[1] &+ a[2], b[1] &+ b[2], position: i * 4 + 1, pair: p, pairs: pairs, out: out)
                        store(a[2] &- a[1], b[2] &- b[1], position: i * 4 + 2, pair: p, pairs: pairs, out: out)
                        store(a[1] &- a[3], b[1] &- b[3], position: i * 4 + 3, pair: p, pairs: pairs, out: out)
                    }
                }
            }
        }
    }

    /// A pair's two channels at one transform position, 16 tiles each, interleaved into 32 values.
    @inline(__always)
    static func store(_ a: SIMD16<Int16>, _ b: SIMD16<Int16>, position: Int, pair: Int, pairs: Int, out: UnsafeMutablePointer<Int16>) {
        let dst = out + (position * pairs + pair) * 32
        for k in 0..<16 {
            dst[2 * k] = a[k]
            dst[2 * k + 1] = b[k]
        }
    }

    /// Y = A^T M A / 4 + bias for the block's 16 tiles and every output channel, into the accumulators.
    @inline(__always)
    static func transformOutputs(_ s: ReferenceKernels.ConvShape, m: UnsafePointer<Int32>, channelTiles: Int,
                                 bias: UnsafePointer<Int32>, acc: UnsafeMutablePointer<Int32>, ty: Int, tx0: Int) {
        let ow = s.outWidth, plane = s.outHeight * ow, mt = PackedConvWeights.channelTile
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
            put(((s0 &+ s1 &+ s2) &>> 2) &+ b, ((s1 &- s2 &- s3) &>> 2) &+ b, to: acc + o * plane + (2 * ty) * ow + 2 * tx0)
            put(((r0 &+ r1 &+ r2) &>> 2) &+ b, ((r1 &- r2 &- r3) &>> 2) &+ b, to: acc + o * plane + (2 * ty + 1) * ow + 2 * tx0)
        }
    }

    /// 16 tiles' left and right outputs of one row, interleaved into 32 consecutive accumulators.
    @inline(__always)
    static func put(_ left: SIMD16<Int32>, _ right: SIMD16<Int32>, to dst: UnsafeMutablePointer<Int32>) {
        for k in 0..<16 {
            dst[2 * k] = left[k]
            dst[2 * k + 1] = right[k]
        }
    }
}
