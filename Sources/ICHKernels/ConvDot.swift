// u8 x s8 convolution as im2col + dot products reduced over K, the shape ARM's dot-product instructions want.
//
// Why this shape: LLVM's AArch64 backend emits `sdot` (Cortex-A76, Raspberry Pi 5: two per cycle, 16 int8
// multiply-adds each) only for reduction-shaped code: scalar Int32 accumulators summed over a K loop of
// sign-extended int8 products, which the loop vectoriser turns into plain loads + sdot (../shared/KNOWHOW.md).
// Both operands must be signed: the activations are stored as x - 128 (the top bit flipped) and the start value
// adds 128 x sum(w) back:
//   bias + sum (x - zero) w = bias + (128 - zero) sum w + sum (x - 128) w,   exactly, in int32.
//
// The register tile is 2 output channels x 3 pixels: six reductions over K, each of them one contiguous byte
// stream against another (weights channel-major per tile: [tile][lane][depth]; im2col rows pixel-major). That is
// the largest tile for which the vectoriser keeps 16 taps per `sdot` (measured with ../shared/tools/a64 and
// llvm-mca -mcpu=neoverse-n1, cycles per 16 taps): 4 ch x 1 px 4 sdot + 5 ldr q, 2.52 cyc (25 MAC/cycle); 2 x 2
// 2.35 cyc; 2 x 3 and 3 x 2 6 sdot + 5 ldr q, 3.02 cyc (31.8 MAC/cycle, the A76's peak is 32); 4 x 2, 3 x 3
// and 4 x 4 fall back to 8-byte sdot or smlal (16 MAC/cycle or less). On plain armv8-a (Raspberry Pi 4) the same
// loop becomes smull + saddw + saddw2 (4.4 MAC/cycle on llvm-mca's cortex-a72 model); there the kernel takes
// int16 products instead (`dot2x3i16`, 6.0 MAC/cycle) when no weight is -128.
//
// K runs in HWC order inside the im2col row, k = (ky x kernel + kx) x inChannels + c: the input is first copied
// to a bordered HWC buffer (padding columns and rows, top bit flipped), so each of a pixel's `kernel` tap rows is
// kernel x inChannels contiguous bytes, copied 16 bytes at a time (the CHW order copied `kernel` bytes per step:
// 36% of the Pi 5 estimate). K is padded to a multiple of 32 with zero weights, so no remainder loop runs.
// im2col runs per block of pixels right before the block's products, into the parallel part's own buffer.

public enum ConvDot {
    public static let depthAlignment = 32
    /// Output channels per register tile (the packed weights' tile).
    public static let channelTile = 2
    /// Pixels per register tile.
    static let pixelTile = 3
    /// Slack after the bordered input and each im2col block: the 16-byte tap-row copies may read and write up to
    /// 15 bytes past a row (what they write there is overwritten or never read).
    static let slack = 16

    /// Pixels per im2col block for a layer of `pixels` output pixels split `parts` ways: about 16 KiB of
    /// columns (in L1 beside the weights) where all the layer's weights fit in L2, about 160 KiB (L2) otherwise
    /// so that the weights stream past fewer blocks; the number of blocks a multiple of `parts` (each part gets
    /// as many), the block a multiple of 3 pixels (whole register tiles).
    static func blockPixels(depth: Int, outChannels: Int, pixels: Int, parts: Int) -> Int {
        let target = outChannels * depth <= 192 << 10 ? 16 << 10 : 160 << 10
        let want = max(pixelTile, target / depth)
        var blocks = (pixels + want - 1) / want
        blocks = max(1, (blocks + parts - 1) / parts * parts)
        let n = (pixels + blocks - 1) / blocks
        return max(pixelTile, (n + pixelTile - 1) / pixelTile * pixelTile)
    }

    /// Bytes of the bordered HWC copy of a band of `rows` output rows.
    static func borderedBytes(_ s: ReferenceKernels.ConvShape, rows: Int) -> Int {
        ((rows - 1) * s.stride + s.kernel) * (s.inWidth + 2 * s.padding) * s.inChannels + slack
    }

    /// As `ConvGEMM.convAccumulate` (which dispatches here), for the band `rows` of output rows.
    /// `starts`: per output channel, bias + (128 - zero) x sum w (Int32 each). `bordered`: `border`'s HWC copy of
    /// the band's input rows. `columns`: `parts` im2col blocks of `blockStride` bytes.
    static func convAccumulate(_ s: ReferenceKernels.ConvShape, rows band: Range<Int>, weights w: PackedConvWeights,
                               starts: UnsafePointer<Int32>, acc: UnsafeMutablePointer<Int32>, bordered: UnsafePointer<Int8>,
                               columns: UnsafeMutablePointer<Int8>, blockStride: Int, parallel: Parallel,
                               finish: (Range<Int>) -> Void) {
        let pixels = band.count * s.outWidth, depth = w.depth, mt = channelTile, nt = pixelTile
        let tiles = (s.outChannels + mt - 1) / mt
        let block = blockPixels(depth: depth, outChannels: s.outChannels, pixels: pixels, parts: parallel.count)
        let int16 = w.int16Products
        w.packed.withUnsafeBufferPointer { packed in
            parallel.parts((pixels + block - 1) / block) { part, blocks in
                let rows = columns + part * blockStride
                for b in blocks {
                    let first = b * block, count = min(block, pixels - first)
                    im2col(s, pixels: first..<(first + count), depth: depth, bordered: bordered, out: rows)
                    for tile in 0..<tiles {
                        let weights = packed.baseAddress! + tile * depth * mt
                        let channel = tile * mt, live = min(mt, s.outChannels - channel)
                        let start0 = starts[channel], start1 = starts[channel + live - 1]
                        let out0 = acc + channel * pixels + first, out1 = acc + (channel + live - 1) * pixels + first
                        // Whole tiles of 3 pixels without bounds tests, then at most one partial tile.
                        let whole = count / nt * nt
                        var q = 0
                        var r0 = UnsafePointer(rows)
                        while q < whole {
                            let d = int16 ? dot2x3i16(depth: depth, weights: weights, r0, r0 + depth, r0 + 2 &* depth)
                                          : dot2x3(depth: depth, weights: weights, r0, r0 + depth, r0 + 2 &* depth)
                            // Lane 1 of a last, half-empty channel tile is computed (zero weights) and dropped:
                            // out1 then aliases out0 and is written first.
                            out1[q] = d.4 &+ start1; out1[q &+ 1] = d.5 &+ start1; out1[q &+ 2] = d.6 &+ start1
                            out0[q] = d.0 &+ start0; out0[q &+ 1] = d.1 &+ start0; out0[q &+ 2] = d.2 &+ start0
                            q &+= nt
                            r0 += nt &* depth
                        }
                        if q < count {
                            let r1 = q &+ 1 < count ? r0 + depth : r0
                            let d = int16 ? dot2x3i16(depth: depth, weights: weights, r0, r1, r0)
                                          : dot2x3(depth: depth, weights: weights, r0, r1, r0)
                            out1[q] = d.4 &+ start1
                            out0[q] = d.0 &+ start0
                            if q &+ 1 < count { out1[q &+ 1] = d.5 &+ start1; out0[q &+ 1] = d.1 &+ start0 }
                        }
                    }
                }
                let begin = min(pixels, blocks.lowerBound * block), end = min(pixels, blocks.upperBound * block)
                finish(begin..<end)
            }
        }
    }

    /// Two channels' dot products (weights `weights` and `weights + depth`) with three im2col rows, over
    /// `depth` (a multiple of 32) taps: six scalar reductions on purpose, the form the vectoriser turns into
    /// `sdot` (see the top). Returns (ch0 px0, ch0 px1, ch0 px2, -, ch1 px0, ch1 px1, ch1 px2).
    @inline(__always)
    static func dot2x3(depth: Int, weights: UnsafePointer<Int8>, _ x0: UnsafePointer<Int8>, _ x1: UnsafePointer<Int8>,
                       _ x2: UnsafePointer<Int8>) -> (Int32, Int32, Int32, Int32, Int32, Int32, Int32) {
        let w0 = weights, w1 = weights + depth
        var a00: Int32 = 0, a01: Int32 = 0, a02: Int32 = 0, a10: Int32 = 0, a11: Int32 = 0, a12: Int32 = 0
        // `& ~31` tells the vectoriser the trip count is a multiple of 32 (it is): no remainder loop.
        for j in 0..<(depth & ~31) {
            let p0 = Int32(x0[j]), p1 = Int32(x1[j]), p2 = Int32(x2[j])
            let c0 = Int32(w0[j]), c1 = Int32(w1[j])
            a00 &+= c0 &* p0; a01 &+= c0 &* p1; a02 &+= c0 &* p2
            a10 &+= c1 &* p0; a11 &+= c1 &* p1; a12 &+= c1 &* p2
        }
        return (a00, a01, a02, 0, a10, a11, a12)
    }

    /// As `dot2x3`, in int16 products for CPUs without `sdot` (Raspberry Pi 4's Cortex-A72): per 16 taps and
    /// pixel-channel pair, smull (8 products) + smlal2 (8 more into the same int16 lanes) and two shift-accumulates
    /// into 4 int32 lanes (LLVM made no `sadalp` of any pair-sum formulation; the shift form is 2 ssra + 1 shl).
    /// Exact only if no weight is -128: |x w + x' w'| <= 2 x 128 x 127 = 32512 fits int16
    /// (`PackedConvWeights.int16Products`). llvm-mca -mcpu=cortex-a72: 6.0 MAC/cycle against 4.4 for `dot2x3`.
    @inline(__always)
    static func dot2x3i16(depth: Int, weights: UnsafePointer<Int8>, _ x0: UnsafePointer<Int8>, _ x1: UnsafePointer<Int8>,
                          _ x2: UnsafePointer<Int8>) -> (Int32, Int32, Int32, Int32, Int32, Int32, Int32) {
        let w0 = UnsafeRawPointer(weights), w1 = w0 + depth
        let p0 = UnsafeRawPointer(x0), p1 = UnsafeRawPointer(x1), p2 = UnsafeRawPointer(x2)
        var a00 = SIMD4<Int32>(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00
        var j = 0
        while j < depth {
            let y0 = p0.loadUnaligned(fromByteOffset: j, as: SIMD16<Int8>.self)
            let y1 = p1.loadUnaligned(fromByteOffset: j, as: SIMD16<Int8>.self)
            let y2 = p2.loadUnaligned(fromByteOffset: j, as: SIMD16<Int8>.self)
            let c0 = w0.loadUnaligned(fromByteOffset: j, as: SIMD16<Int8>.self)
            let c1 = w1.loadUnaligned(fromByteOffset: j, as: SIMD16<Int8>.self)
            a00 &+= pairSum(products(y0, c0)); a01 &+= pairSum(products(y1, c0)); a02 &+= pairSum(products(y2, c0))
            a10 &+= pairSum(products(y0, c1)); a11 &+= pairSum(products(y1, c1)); a12 &+= pairSum(products(y2, c1))
            j &+= 16
        }
        return (a00.wrappedSum(), a01.wrappedSum(), a02.wrappedSum(), 0, a10.wrappedSum(), a11.wrappedSum(), a12.wrappedSum())
    }

    /// x[i] w[i] + x[i + 8] w[i + 8] in int16 lanes (smull + smlal2).
    @inline(__always)
    static func products(_ x: SIMD16<Int8>, _ w: SIMD16<Int8>) -> SIMD8<Int16> {
        widen(x.lowHalf) &* widen(w.lowHalf) &+ widen(x.highHalf) &* widen(w.highHalf)
    }

    @inline(__always)
    static func widen(_ v: SIMD8<Int8>) -> SIMD8<Int16> {
        var r = SIMD8<Int16>()
        for i in 0..<8 { r[i] = Int16(v[i]) }
        return r
    }

    /// Lanes 2i and 2i + 1 sign-extended and added into int32 lane i: the int16 pairs seen as int32 lanes, the low
    /// half sign-extended by a shift pair, the high half by one arithmetic shift (shl + 2 ssra on AArch64).
    @inline(__always)
    static func pairSum(_ v: SIMD8<Int16>) -> SIMD4<Int32> {
        let b = unsafeBitCast(v, to: SIMD4<Int32>.self)
        return ((b &<< 16) &>> 16) &+ (b &>> 16)
    }

    /// Whether the dot kernel multiplies in int16 products (`dot2x3i16`) when the weights allow: on arm64 without
    /// the dot-product extension, i.e. unless the build defines ICHD_DOTPROD (scripts/arch-flags.sh does for a
    /// CPU with asimddp, the Raspberry Pi 5); `sdot` needs no such limit.
    public static var prefersInt16Products: Bool {
        #if arch(arm64) && !ICHD_DOTPROD
        true
        #else
        false
        #endif
    }

    /// The dot products of one register tile alone (for the ARM check's driver): out[lane x 3 + pixel].
    static func tile(depth: Int, weights: UnsafePointer<Int8>, rows: UnsafePointer<Int8>, int16: Bool, out: UnsafeMutablePointer<Int32>) {
        let d = int16 ? dot2x3i16(depth: depth, weights: weights, rows, rows + depth, rows + 2 * depth)
                      : dot2x3(depth: depth, weights: weights, rows, rows + depth, rows + 2 * depth)
        out[0] = d.0; out[1] = d.1; out[2] = d.2; out[3] = d.4; out[4] = d.5; out[5] = d.6
    }

    /// A bordered HWC copy of the input rows a band of output rows reads, top bit flipped: out[(r x width + x)
    /// x C + c] = input[c][firstRow + r][x - padding] ^ 0x80, padding (zero ^ 0x80) outside the input.
    static func border(_ s: ReferenceKernels.ConvShape, rows band: Range<Int>, input: UnsafePointer<UInt8>, zero: UInt8,
                       out: UnsafeMutablePointer<UInt8>, parallel: Parallel) {
        let k = s.kernel, st = s.stride, pad = s.padding, c = s.inChannels, padding = zero ^ 0x80
        let width = s.inWidth + 2 * pad, rowBytes = width * c, plane = s.inHeight * s.inWidth
        let rowsNeeded = (band.count - 1) * st + k, firstRow = band.lowerBound * st - pad
        parallel(rowsNeeded) { rows in
            for r in rows where r % st < k {  // rows no tap reads (a 1x1 stride-2 kernel's odd ones) stay as they are
                let dst = out + r * rowBytes, iy = firstRow + r
                guard iy >= 0 && iy < s.inHeight else {
                    dst.update(repeating: padding, count: rowBytes)
                    continue
                }
                dst.update(repeating: padding, count: pad * c)
                (dst + (pad + s.inWidth) * c).update(repeating: padding, count: pad * c)
                let src = input + iy * s.inWidth, body = dst + pad * c
                var x = 0
                // 8 pixels x 8 channels at a time: eight 8-byte row loads, eight 8-byte stores.
                if c % 8 == 0 {
                    while x + 8 <= s.inWidth {
                        var ch = 0
                        while ch < c {
                            transpose8x8(src + (ch &* plane &+ x), stride: plane, to: body + (x &* c &+ ch), dstStride: c)
                            ch &+= 8
                        }
                        x &+= 8
                    }
                }
                while x < s.inWidth {
                    for ch in 0..<c { body[x &* c &+ ch] = src[ch &* plane &+ x] ^ 0x80 }
                    x += 1
                }
            }
        }
    }

    /// An 8 x 8 byte block from 8 rows `stride` apart to 8 rows `dstStride` apart, transposed and top bit flipped:
    /// three rounds of interleaves (bytes, 16-bit, 32-bit lanes), element loops LLVM turns into zip1/zip2 (lanes
    /// gathered one by one into a SIMD8 were a chain of lane inserts: 2.8 cycles per byte on the Pi 5 model).
    @inline(__always)
    static func transpose8x8(_ src: UnsafePointer<UInt8>, stride: Int, to dst: UnsafeMutablePointer<UInt8>, dstStride: Int) {
        let p = UnsafeRawPointer(src)
        func row(_ i: Int) -> SIMD8<UInt8> { p.loadUnaligned(fromByteOffset: i &* stride, as: SIMD8<UInt8>.self) }
        let flip = SIMD16<UInt8>(repeating: 0x80)
        // Bytes: z01 = r0[0] r1[0] r0[1] r1[1] ..., then 16-bit pairs: x 0-3 (or 4-7) of rows 0-3 (or 4-7).
        let z01 = zip8(row(0), row(1)) ^ flip, z23 = zip8(row(2), row(3)) ^ flip
        let z45 = zip8(row(4), row(5)) ^ flip, z67 = zip8(row(6), row(7)) ^ flip
        let a = zip16(z01, z23), b = zip16(z45, z67)  // (low: x 0-3, high: x 4-7) x 4 rows each
        let lo = zip32(a.0, b.0), hi = zip32(a.1, b.1)  // x 0-1, 2-3 and 4-5, 6-7: 8 rows each
        let q = UnsafeMutableRawPointer(dst)
        for (i, v) in [lo.0, lo.1, hi.0, hi.1].enumerated() {
            q.storeBytes(of: v.lowHalf, toByteOffset: (2 &* i) &* dstStride, as: SIMD8<UInt8>.self)
            q.storeBytes(of: v.highHalf, toByteOffset: (2 &* i &+ 1) &* dstStride, as: SIMD8<UInt8>.self)
        }
    }

    @inline(__always)
    static func zip8(_ x: SIMD8<UInt8>, _ y: SIMD8<UInt8>) -> SIMD16<UInt8> {
        var r = SIMD16<UInt8>()
        for i in 0..<8 {
            r[2 &* i] = x[i]
            r[2 &* i &+ 1] = y[i]
        }
        return r
    }

    /// The 16-bit lanes of x and y interleaved: (x0 y0 x1 y1 x2 y2 x3 y3), (x4 y4 ... x7 y7).
    @inline(__always)
    static func zip16(_ x: SIMD16<UInt8>, _ y: SIMD16<UInt8>) -> (SIMD16<UInt8>, SIMD16<UInt8>) {
        let a = unsafeBitCast(x, to: SIMD8<UInt16>.self), b = unsafeBitCast(y, to: SIMD8<UInt16>.self)
        var lo = SIMD8<UInt16>(), hi = SIMD8<UInt16>()
        for i in 0..<4 {
            lo[2 &* i] = a[i]
            lo[2 &* i &+ 1] = b[i]
        }
        for i in 0..<4 {
            hi[2 &* i] = a[i &+ 4]
            hi[2 &* i &+ 1] = b[i &+ 4]
        }
        return (unsafeBitCast(lo, to: SIMD16<UInt8>.self), unsafeBitCast(hi, to: SIMD16<UInt8>.self))
    }

    /// The 32-bit lanes of x and y interleaved: (x0 y0 x1 y1), (x2 y2 x3 y3).
    @inline(__always)
    static func zip32(_ x: SIMD16<UInt8>, _ y: SIMD16<UInt8>) -> (SIMD16<UInt8>, SIMD16<UInt8>) {
        let a = unsafeBitCast(x, to: SIMD4<UInt32>.self), b = unsafeBitCast(y, to: SIMD4<UInt32>.self)
        var lo = SIMD4<UInt32>(), hi = SIMD4<UInt32>()
        for i in 0..<2 {
            lo[2 &* i] = a[i]
            lo[2 &* i &+ 1] = b[i]
        }
        for i in 0..<2 {
            hi[2 &* i] = a[i &+ 2]
            hi[2 &* i &+ 1] = b[i &+ 2]
        }
        return (unsafeBitCast(lo, to: SIMD16<UInt8>.self), unsafeBitCast(hi, to: SIMD16<UInt8>.self))
    }

    /// im2col of the band's pixels `range` into `out`, one row of `depth` signed taps per pixel (pixel
    /// `range.lowerBound` first): row[(ky x kernel + kx) x C + c] = x[c][iy][ix] - 128 from the bordered copy, so
    /// each tap row is one run of kernel x C bytes. Taps past K are 0 (their weights are 0).
    @inline(never)  // once per block; out of line so that profiles (bench/arm) can tell it from the products
    static func im2col(_ s: ReferenceKernels.ConvShape, pixels range: Range<Int>, depth: Int, bordered: UnsafePointer<Int8>,
                       out: UnsafeMutablePointer<Int8>) {
        let ow = s.outWidth, k = s.kernel, st = s.stride, c = s.inChannels
        let run = k * c, taps = k * run, rowBytes = (s.inWidth + 2 * s.padding) * c
        let chunks = (run + 15) / 16
        var r = range.lowerBound / ow, ox = range.lowerBound % ow
        var row = out
        for _ in range {
            var src = UnsafeRawPointer(bordered + r * st * rowBytes + ox * st * c)
            var dst = UnsafeMutableRawPointer(row)
            for _ in 0..<k {
                for i in 0..<chunks {
                    dst.storeBytes(of: src.loadUnaligned(fromByteOffset: 16 &* i, as: SIMD16<Int8>.self), toByteOffset: 16 &* i,
                                   as: SIMD16<Int8>.self)
                }
                src += rowBytes
                dst += run
            }
            // Taps past K: zero, 16 bytes at a time (up to 15 past the row: the next row's, rewritten next, or slack).
            var j = taps
            while j < depth {
                UnsafeMutableRawPointer(row).storeBytes(of: SIMD16<Int8>(), toByteOffset: j, as: SIMD16<Int8>.self)
                j &+= 16
            }
            row += depth
            ox += 1
            if ox == ow {
                ox = 0
                r += 1
            }
        }
    }
}
