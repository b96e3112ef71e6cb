using EdgeLlm.Tests.Layering.Sample.High;

namespace EdgeLlm.Tests.Layering;

/// <summary>
/// The engine's namespaces form one line: a lower layer never uses a higher one (checked on the compiled assembly,
/// method bodies included). The checker itself is shown to catch violations on a small set of types in this test
/// assembly that break a two-layer rule on purpose, one way each.
/// </summary>
public class LayeringTests
{
    /// <summary>
    /// Bottom to top. IO and the root namespace (EdgeLlmException) are base utilities every layer may use; Diagnostics
    /// (memory bandwidth, weight traffic for <c>bench</c>) reads loaded weights, so it sits on top with the
    /// Microsoft.Extensions.AI adapters.
    /// </summary>
    public static readonly Layer[] CoreLayers =
    [
        new("EdgeLlm", 0),
        new("EdgeLlm.IO.*", 0),
        new("EdgeLlm.Gguf.*", 1),
        new("EdgeLlm.Quant.*", 2),
        new("EdgeLlm.Compute.*", 3),
        new("EdgeLlm.Model.*", 4),
        new("EdgeLlm.Backends.*", 5),
        new("EdgeLlm.Generation.*", 6),
        new("EdgeLlm.AI.*", 7),
        new("EdgeLlm.Diagnostics.*", 7),
    ];

    [Fact]
    public void CoreNamespacesUseOnlyLowerLayers()
    {
        string path = typeof(EdgeLlmException).Assembly.Location;
        var violations = LayerCheck.Violations(path, "EdgeLlm", CoreLayers);
        Assert.True(violations.Count == 0, "layer violations in " + Path.GetFileName(path) + ":\n" + string.Join("\n", violations));
    }

    private static readonly Layer[] SampleLayers =
    [
        new("EdgeLlm.Tests.Layering.Sample.Low", 1),
        new("EdgeLlm.Tests.Layering.Sample.High", 2),
    ];

    [Fact]
    public void CheckerReportsEachKindOfUpwardReference()
    {
        var violations = LayerCheck.Violations(typeof(LayeringTests).Assembly.Location, "EdgeLlm.Tests.Layering.Sample", SampleLayers);
        string[] offenders =
        [
            "Sample.Low.FieldUser", "Sample.Low.SignatureUser", "Sample.Low.BodyUser", "Sample.Low.StaticCallUser",
            "Sample.Low.GenericUser", "Sample.Low.TypeofUser", "Sample.Low.BaseUser", "Sample.Low.LambdaUser",
        ];
        foreach (var o in offenders)
            Assert.Contains(violations, v => v.Contains(o, StringComparison.Ordinal) && v.Contains("uses EdgeLlm.Tests.Layering.Sample.High.", StringComparison.Ordinal));
        // Nothing else: the clean type and the high layer's use of the low one are allowed.
        Assert.Equal(offenders.Length, violations.Select(v => offenders.First(o => v.Contains(o, StringComparison.Ordinal))).Distinct().Count());
        Assert.DoesNotContain(violations, v => v.Contains("Clean", StringComparison.Ordinal) || v.StartsWith("EdgeLlm.Tests.Layering.Sample.High", StringComparison.Ordinal));
    }

    [Fact]
    public void CheckerReportsANamespaceInNoLayer()
    {
        var violations = LayerCheck.Violations(typeof(LayeringTests).Assembly.Location, "EdgeLlm.Tests.Layering.Sample", [SampleLayers[0]]);
        Assert.Contains("namespace EdgeLlm.Tests.Layering.Sample.High is in no layer", violations);
        Assert.DoesNotContain(violations, v => v.Contains(" uses ", StringComparison.Ordinal)); // an unplaced type has no rank to break
    }

    [Fact]
    public void IlTokensSkipsOperandsOfEveryWidth()
    {
        // ldc.i4.s 5; ldc.i8 <8 bytes>; switch (2 targets); call 0x0A000001; ldstr 0x70000001; ldarg 0 (FE 09); ret
        byte[] il =
        [
            0x1F, 5,
            0x21, 1, 2, 3, 4, 5, 6, 7, 8,
            0x45, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0x28, 0x01, 0x00, 0x00, 0x0A,
            0x72, 0x01, 0x00, 0x00, 0x70,
            0xFE, 0x09, 0x00, 0x00,
            0x2A,
        ];
        Assert.Equal([0x0A000001], LayerCheck.IlTokens(il));
    }
}
