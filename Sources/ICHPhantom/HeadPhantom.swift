import Foundation
import ICHIngest

/// A synthetic head in 3-D, sampled as axial CT slices in Hounsfield units. Everything is synthetic: it is a
/// test object with the geometry CT readers expect, not anatomy of any person.
///
/// Frame: millimetres, x to the patient's left, y to the back, z up. The head is an ellipsoid (semi-axes a, b in
/// plane, c in z) centred at the origin of the series, rotated in plane by `rotation` and sheared by `tilt` (a
/// gantry tilt moves the centre with z). From outside in: air (-1000), scalp (about 40), skull (cortical bone
/// about 1400 around a diploe of about 700), cortex (grey matter about 40, with CSF-filled sulci), white matter
/// (about 28), lateral and third ventricles (CSF about 8), basal cisterns on middle-low slices and the skull base
/// (bone) on the lowest ones; blank slices above the vertex.
///
/// Bleeds (50-90 HU) are 3-D objects, so neighbouring slices agree:
/// epidural — a biconvex lens against the inner table; subdural — a thin crescent along the inner table over a
/// wide arc; subarachnoid — hyperdense blood filling sulci over a sector (and cisterns when low); intraparenchymal
/// — an ellipsoid in white matter with an optional low-density rim; intraventricular — blood layering in the
/// dependent (posterior) part of a lateral ventricle.
public struct HeadPhantom: Sendable {
    public enum Subtype: String, CaseIterable, Sendable {
        case epidural, intraparenchymal, intraventricular, subarachnoid, subdural
    }

    struct Bleed: Sendable {
        var subtype: Subtype
        /// Angular position (radians, in the head frame) for skull-adjacent and sulcal bleeds.
        var angle: Double
        /// Angular half-width (radians).
        var span: Double
        /// Centre height and half-extent in z (mm).
        var z: Double
        var height: Double
        /// Largest thickness (mm) for epidural/subdural; radius (mm) for intraparenchymal.
        var size: Double
        /// Centre in plane (mm, head frame) for intraparenchymal.
        var x: Double
        var y: Double
        var hu: Double
        /// Intraparenchymal: width (mm) of a low-density rim, 0 for none. Intraventricular: which ventricle (+-1).
        var extra: Double
    }

    public let seed: UInt64
    /// In-plane semi-axes and vertical semi-axis of the head (mm).
    let a: Double, b: Double, c: Double
    let rotation: Double
    let tilt: (x: Double, y: Double)
    let offset: (x: Double, y: Double)
    let scalp: Double, skull: Double
    let noise: Double
    let bleeds: [Bleed]
    /// z of the skull base (lowest slice) and the slice spacing (mm).
    public let zBottom: Double
    public let spacing: Double
    public let sliceCount: Int
    public let family: Family
    let heldOut: HeldOutAnatomy?
    let varied: VariedAnatomy?
    /// Field of view (mm) and reconstructed slice thickness (mm) of the rendered slices.
    public var fieldOfView: Double { varied?.fov ?? 250 }
    public var sliceThickness: Double { varied?.thickness ?? spacing }

    /// A random head; `subtypes` lists the bleeds to place (empty: a negative series).
    public init(seed: UInt64, subtypes: [Subtype], sliceSpacing: Double = 5, family: Family = .standard) {
        var rng = SeededGenerator(seed: seed)
        self.seed = seed
        self.family = family
        heldOut = family == .heldOut ? HeldOutAnatomy(seed: seed) : nil
        var varied = family == .varied ? VariedAnatomy(seed: seed, bleedCount: subtypes.count) : nil
        a = 68 + 10 * rng.unit()
        b = 84 + 12 * rng.unit()
        c = 62 + 10 * rng.unit()
        rotation = (rng.unit() - 0.5) * 0.35
        tilt = ((rng.unit() - 0.5) * 0.15, (rng.unit() - 0.5) * 0.3)
        offset = ((rng.unit() - 0.5) * 20, (rng.unit() - 0.5) * 20)
        scalp = 3 + 3 * rng.unit()
        skull = 5 + 3 * rng.unit()
        noise = 3 + 3 * rng.unit()
        // The varied family's slices are as thick as they are apart (contiguous), 3-5 mm.
        spacing = varied?.thickness ?? sliceSpacing
        // From the skull base (about 0.75 c below the centre) to a little above the vertex.
        zBottom = -0.75 * c
        sliceCount = min(varied == nil ? 40 : 60, max(20, Int(((c - zBottom) / spacing).rounded(.up)) + 2))
        var bleeds: [Bleed] = []
        for subtype in subtypes {
            let angle = rng.unit() * 2 * Double.pi
            // Bleeds sit in the middle and upper head (where there is brain), tiny to large.
            let z = -0.25 * c + rng.unit() * 0.85 * c
            let scale = 0.3 + 0.7 * rng.unit()
            var bleed = Bleed(subtype: subtype, angle: angle, span: 0, z: z, height: 0, size: 0, x: 0, y: 0,
                              hu: 55 + 30 * rng.unit(), extra: 0)
            switch subtype {
            case .epidural:
                bleed.span = 0.25 + 0.35 * scale
                bleed.height = 10 + 20 * scale
                bleed.size = 5 + 15 * scale
            case .subdural:
                bleed.span = 0.6 + 0.9 * scale
                bleed.height = 20 + 30 * scale
                bleed.size = 2 + 8 * scale
            case .subarachnoid:
                bleed.span = 0.4 + 0.8 * scale
                bleed.height = 10 + 25 * scale
            case .intraparenchymal:
                let r = 0.25 + 0.3 * rng.unit()
                bleed.x = r * a * cos(angle)
                bleed.y = r * b * sin(angle)
                bleed.size = 3 + 17 * scale
                bleed.extra = rng.unit() < 0.5 ? 2 + 2 * rng.unit() : 0
            case .intraventricular:
                bleed.z = -0.05 * c + rng.unit() * 0.35 * c
                bleed.height = 8 + 12 * scale
                bleed.extra = rng.unit() < 0.5 ? -1 : 1
                bleed.size = 0.3 + 0.5 * scale  // filled fraction of the ventricle, from the back
            }
            bleeds.append(bleed)
        }
        varied?.vary(&bleeds, seed: seed)
        self.bleeds = bleeds
        self.varied = varied
    }

    public func sliceZ(_ index: Int) -> Double { zBottom + Double(index) * spacing }

    /// The slice at `index`, `size` pixels a side over `fieldOfView` (250 mm but in the varied family), the subtypes whose pixels were
    /// drawn (a label is what was drawn, not what was intended), and how many blood pixels each subtype drew.
    public func render(slice index: Int, size: Int) -> (image: HounsfieldImage, subtypes: Set<Subtype>, bloodPixels: [Subtype: Int]) {
        if let varied { return renderVaried(varied, slice: index, size: size) }
        let z = sliceZ(index)
        var rng = SeededGenerator(seed: seed &* 7919 &+ UInt64(index))
        let fov = 250.0, pixel = fov / Double(size)
        var pixels = [Float](repeating: -1000, count: size * size)
        var drawn: [Subtype: Int] = [:]
        let zn = z / c
        guard abs(zn) < 1 else { return (HounsfieldImage(width: size, height: size, pixels: pixels), [], [:]) }
        let section = (1 - zn * zn).squareRoot()
        let A = a * section, B = b * section
        let cx = offset.x + tilt.x * z, cy = offset.y + tilt.y * z
        let cosR = cos(rotation), sinR = sin(rotation)
        let outer = min(A, B)
        // Ventricles: two lateral ellipses and a thin third ventricle, in the middle of the head's height.
        let ventricleZ = abs(zn - 0.15) < 0.45
        let ventricleScale = ventricleZ ? (1 - abs(zn - 0.15) / 0.45).squareRoot() : 0
        for py in 0..<size {
            for px in 0..<size {
                let mx = (Double(px) + 0.5) * pixel - fov / 2 - cx
                let my = (Double(py) + 0.5) * pixel - fov / 2 - cy
                let u = cosR * mx + sinR * my, v = -sinR * mx + cosR * my
                var r = ((u / A) * (u / A) + (v / B) * (v / B)).squareRoot()
                let theta = atan2(v / B, u / A)
                if let h = heldOut { r /= h.outlineFactor(theta) }
                let depth = (1 - r) * outer  // mm inside the outer surface (approximate)
                guard depth > 0 else { continue }
                var hu: Double
                if depth < scalp {
                    hu = 35 + 10 * sin(theta * 7)
                } else if depth < scalp + skull {
                    let t = (depth - scalp) / skull
                    hu = (t > 0.3 && t < 0.7) ? 650 + 100 * sin(theta * 13 + zn * 5) : 1350 + 100 * cos(theta * 5)
                } else {
                    let inside = depth - scalp - skull  // mm inside the inner table
                    hu = inside < 3.5 ? 40 : 28  // cortex, then white matter
                    // Sulci: CSF clefts reaching into the cortex.
                    var sulcus = inside < 5 && sin(theta * 48 + zn * 9) > 0.93
                    if let h = heldOut {
                        // Irregular folding: cortex thickness varies with angle and height, sulci at its thin points.
                        let thickness = h.cortexThickness(theta, zn)
                        hu = inside < thickness ? h.grey : h.white
                        sulcus = inside < thickness + 1 && thickness < h.cortex * 0.75
                    }
                    if sulcus { hu = 8 }
                    // Skull base: bone ridges and sinus air on the lowest slices.
                    if zn < -0.55 {
                        let ridge = abs(v / B - 0.1) < 0.08 + 0.1 * (-0.55 - zn) && abs(u / A) > 0.25
                        if ridge { hu = 1200 }
                        if abs(u / A) < 0.15 && v / B < -0.55 { hu = -900 }
                    }
                    // Basal cisterns: a CSF ring around the brainstem.
                    let ring = ((u / A) * (u / A) + ((v / B) - 0.1) * ((v / B) - 0.1)).squareRoot()
                    let cistern = zn > -0.55 && zn < -0.2 && abs(ring - 0.22) < 0.04
                    if cistern { hu = 8 }
                    // Ventricles.
                    var ventricle = 0
                    if ventricleScale > 0 {
                        for side in [-1.0, 1.0] {
                            let vx = (u / A - side * 0.13) / (0.09 * ventricleScale), vy = (v / B + 0.05) / (0.38 * ventricleScale)
                            if vx * vx + vy * vy < 1 { ventricle = side < 0 ? -1 : 1 }
                        }
                        let tx = (u / A) / 0.025, ty = (v / B - 0.05) / 0.12
                        if tx * tx + ty * ty < 1 && zn < 0.2 { ventricle = 2 }
                        if ventricle != 0 { hu = 8 }
                    }
                    if let h = heldOut {
                        hu = heldOutConfounders(h, hu: hu, u: u, v: v, zn: zn, inside: inside, ventricle: ventricle, A: A, B: B)
                    }
                    for bleed in bleeds {
                        if let (h, isBlood) = bleedHU(bleed, u: u, v: v, z: z, inside: inside, theta: theta, sulcus: sulcus || cistern,
                                                      ventricle: ventricle, vn: v / B, ventricleScale: ventricleScale) {
                            hu = h
                            if isBlood { drawn[bleed.subtype, default: 0] += 1 }
                        }
                    }
                }
                if let h = heldOut {
                    // Beam-hardening streaks between the dense bones of the skull base.
                    if zn < -0.35 {
                        for s in h.streaks {
                            let d = abs(-sin(s.angle) * u + cos(s.angle) * v)
                            hu += s.amplitude * exp(-d * d / (s.width * s.width)) * min(1, (-0.35 - zn) / 0.2)
                        }
                    }
                    pixels[py * size + px] = Float(hu)  // noise below, correlated
                } else {
                    hu += noise * rng.gaussian()
                    pixels[py * size + px] = Float(hu.rounded())
                }
            }
        }
        if let h = heldOut {
            let field = h.noiseField(size: size, rng: &rng)
            for i in pixels.indices where pixels[i] > -1000 { pixels[i] = (pixels[i] + field[i]).rounded() }
        }
        // A label needs at least a few pixels: one noisy pixel is not a bleed anybody could see.
        let minimum = max(3, size * size / 65536)
        return (HounsfieldImage(width: size, height: size, pixels: pixels), Set(drawn.filter { $0.value >= minimum }.keys), drawn)
    }

    /// The held-out family's high densities that are not blood, drawn over the tissue (bleeds are drawn after,
    /// over them): the falx and the superior sagittal sinus in the midline, the pineal gland behind the third
    /// ventricle, the choroid plexus in the lateral ventricles' trigones, the basal ganglia on both sides.
    private func heldOutConfounders(_ h: HeldOutAnatomy, hu: Double, u: Double, v: Double, zn: Double, inside: Double,
                                    ventricle: Int, A: Double, B: Double) -> Double {
        var hu = hu
        let un = u / A, vn = v / B
        if h.falx > 0 && abs(u) < 0.8 && zn > -0.3 && abs(vn) > 0.15 { hu = h.falx }
        // The sinus: a triangle against the inner table at the back of the midline.
        if vn > 0 && inside < 7 && abs(u) < 7 - inside && zn > -0.5 { hu = h.sinus }
        let atVentricles = abs(zn - 0.15) < 0.3
        if h.pineal > 0 && atVentricles && abs(zn - 0.05) < 0.08 {
            let dx = u, dy = v - 0.2 * B
            if dx * dx + dy * dy < 9 { hu = h.pineal }
        }
        if h.choroid > 0 && ventricle != 0 && ventricle != 2 && vn > 0.18 && abs(zn - 0.15) < 0.15 { hu = h.choroid }
        if h.basalGanglia > 0 && abs(zn - 0.05) < 0.1 {
            for side in [-1.0, 1.0] {
                let dx = un - side * 0.22, dy = vn + 0.02
                if dx * dx + dy * dy < 0.0016 { hu = h.basalGanglia }
            }
        }
        return hu
    }

    /// The bleed's HU at this point and whether it is blood (an oedema rim is not), or nil outside it.
    func bleedHU(_ bleed: Bleed, u: Double, v: Double, z: Double, inside: Double, theta: Double, sulcus: Bool,
                         ventricle: Int, vn: Double, ventricleScale: Double) -> (Double, Bool)? {
        let dz = (z - bleed.z) / max(bleed.height, 1e-6)
        var dTheta = theta - bleed.angle
        dTheta = atan2(sin(dTheta), cos(dTheta))
        switch bleed.subtype {
        case .epidural:
            let f = 1 - (dTheta / bleed.span) * (dTheta / bleed.span) - dz * dz
            return f > 0 && inside < bleed.size * f ? (bleed.hu, true) : nil
        case .subdural:
            let f = 1 - pow(abs(dTheta / bleed.span), 4) - pow(abs(dz), 4)
            // Subdural blood is often a little less dense (mixed with CSF): 10 HU below the series' bleed value.
            return f > 0 && inside < bleed.size * f.squareRoot() ? (max(50, bleed.hu - 10), true) : nil
        case .subarachnoid:
            let f = 1 - (dTheta / bleed.span) * (dTheta / bleed.span) - dz * dz
            return f > 0 && sulcus ? (bleed.hu, true) : nil
        case .intraparenchymal:
            let dx = u - bleed.x, dy = v - bleed.y, dzz = z - bleed.z
            let d = (dx * dx + dy * dy + dzz * dzz).squareRoot()
            if d < bleed.size { return (bleed.hu, true) }
            if bleed.extra > 0 && d < bleed.size + bleed.extra && ventricle == 0 { return (18, false) }
            return nil
        case .intraventricular:
            guard ventricle == Int(bleed.extra), abs(dz) < 1 else { return nil }
            // Blood settles at the back (larger y): fill the ventricle's last `size` fraction.
            let along = (vn + 0.05) / (0.38 * max(ventricleScale, 1e-6))  // -1 front ... 1 back
            return along > 1 - 2 * bleed.size ? (bleed.hu, true) : nil
        }
    }
}
