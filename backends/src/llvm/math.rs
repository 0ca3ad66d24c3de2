//! Branch-free f32 `exp`, `tanh` and `erf` as LLVM IR functions that inline
//! into kernels, so loops calling them still vectorize (the C library's
//! versions would be scalar calls). Accuracy: a few ulp for `exp`, about 1e-7
//! absolute for `tanh` and `erf`.

/// The helpers' definitions, in LLVM IR text.
pub(crate) const HELPERS: &str = r#"define internal float @kiln.exp.f32(float %x) #1 {
  %lo = fcmp olt float %x, -8.700000e+01
  %x1 = select i1 %lo, float -8.700000e+01, float %x
  %hi = fcmp ogt float %x1, 8.800000e+01
  %xc = select i1 %hi, float 8.800000e+01, float %x1
  %t = call float @llvm.fma.f32(float %xc, float 0x3FF7154760000000, float 1.258291200e+07)
  %nf = fsub float %t, 1.258291200e+07
  %r0 = call float @llvm.fma.f32(float %nf, float -6.933593750e-01, float %xc)
  %r = call float @llvm.fma.f32(float %nf, float 0x3F2BD01060000000, float %r0)
  %r2 = fmul float %r, %r
  %p0 = call float @llvm.fma.f32(float 0x3F2A0D2CE0000000, float %r, float 0x3F56E879C0000000)
  %p1 = call float @llvm.fma.f32(float %p0, float %r, float 0x3F81112100000000)
  %p2 = call float @llvm.fma.f32(float %p1, float %r, float 0x3FA5553820000000)
  %p3 = call float @llvm.fma.f32(float %p2, float %r, float 0x3FC5555540000000)
  %p4 = call float @llvm.fma.f32(float %p3, float %r, float 0x3FE0000000000000)
  %p5 = call float @llvm.fma.f32(float %p4, float %r2, float %r)
  %p = fadd float %p5, 1.000000e+00
  %bits = bitcast float %t to i32
  %n = sub i32 %bits, 1262485504
  %e = add i32 %n, 127
  %sh = shl i32 %e, 23
  %scale = bitcast i32 %sh to float
  %y = fmul float %p, %scale
  %over = fcmp ogt float %x, 0x40562E4300000000
  %y1 = select i1 %over, float 0x7FF0000000000000, float %y
  %under = fcmp olt float %x, -1.040000e+02
  %y2 = select i1 %under, float 0.000000e+00, float %y1
  ret float %y2
}

define internal float @kiln.tanh.f32(float %x) #1 {
  %a = call float @llvm.fabs.f32(float %x)
  %m = fmul float %a, -2.000000e+00
  %e = call float @kiln.exp.f32(float %m)
  %num = fsub float 1.000000e+00, %e
  %den = fadd float 1.000000e+00, %e
  %big = fdiv float %num, %den
  %z = fmul float %x, %x
  %q0 = call float @llvm.fma.f32(float 0xBF775E1D40000000, float %z, float 0x3F952269C0000000)
  %q1 = call float @llvm.fma.f32(float %q0, float %z, float 0xBFAB83C5A0000000)
  %q2 = call float @llvm.fma.f32(float %q1, float %z, float 0x3FC1107260000000)
  %q3 = call float @llvm.fma.f32(float %q2, float %z, float 0xBFD5555320000000)
  %q4 = fmul float %q3, %z
  %small = call float @llvm.fma.f32(float %q4, float %a, float %a)
  %isSmall = fcmp olt float %a, 6.250000e-01
  %t = select i1 %isSmall, float %small, float %big
  %r = call float @llvm.copysign.f32(float %t, float %x)
  ret float %r
}

define internal float @kiln.erf.f32(float %x) #1 {
  %a = call float @llvm.fabs.f32(float %x)
  %pa = call float @llvm.fma.f32(float 0x3FD4F740A0000000, float %a, float 1.000000e+00)
  %t = fdiv float 1.000000e+00, %pa
  %s0 = call float @llvm.fma.f32(float 0x3FF0FB8440000000, float %t, float 0xBFF7401C60000000)
  %s1 = call float @llvm.fma.f32(float %s0, float %t, float 0x3FF6BE1C60000000)
  %s2 = call float @llvm.fma.f32(float %s1, float %t, float 0xBFD23531C0000000)
  %s3 = call float @llvm.fma.f32(float %s2, float %t, float 0x3FD04F20C0000000)
  %s4 = fmul float %s3, %t
  %a2 = fmul float %a, %a
  %na2 = fneg float %a2
  %ex = call float @kiln.exp.f32(float %na2)
  %big = call float @llvm.fma.f32(float %s4, float %ex, float -1.000000e+00)
  %bigp = fneg float %big
  %u0 = call float @llvm.fma.f32(float 0x3F1F9A3260000000, float %a2, float 0xBF4C02DB40000000)
  %u1 = call float @llvm.fma.f32(float %u0, float %a2, float 0x3F7565BCE0000000)
  %u2 = call float @llvm.fma.f32(float %u1, float %a2, float 0xBF9B82CE40000000)
  %u3 = call float @llvm.fma.f32(float %u2, float %a2, float 0x3FBCE2F220000000)
  %u4 = call float @llvm.fma.f32(float %u3, float %a2, float 0xBFD8127460000000)
  %u5 = call float @llvm.fma.f32(float %u4, float %a2, float 0x3FF20DD760000000)
  %small = fmul float %u5, %a
  %isSmall = fcmp olt float %a, 5.000000e-01
  %y = select i1 %isSmall, float %small, float %bigp
  %r = call float @llvm.copysign.f32(float %y, float %x)
  ret float %r
}
"#;

/// Intrinsics the helpers call.
pub(crate) const HELPER_DECLS: [&str; 3] = [
    "declare float @llvm.fma.f32(float, float, float)",
    "declare float @llvm.fabs.f32(float)",
    "declare float @llvm.copysign.f32(float, float)",
];

#[cfg(test)]
mod tests {
    /// The hex float constants above, recomputed from their decimal values:
    /// each must be exactly representable as f32.
    #[test]
    fn constants_are_f32() {
        for line in super::HELPERS.lines() {
            for w in line.split([' ', ',', ')']) {
                if let Some(h) = w.strip_prefix("0x") {
                    let bits = u64::from_str_radix(h, 16).unwrap();
                    let v = f64::from_bits(bits);
                    assert_eq!(v as f32 as f64, v, "{w} is not an f32 value");
                }
            }
        }
    }
}
