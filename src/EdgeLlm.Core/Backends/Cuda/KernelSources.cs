using System.Text;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// The CUDA C sources of kernels/ as embedded in this assembly: every <c>*.cu</c> file is one NVRTC program
/// (one CUDA module), and every <c>*.cuh</c> file is a header passed to each program by name.
/// </summary>
public static class KernelSources
{
    private const string Prefix = "EdgeLlm.Kernels.";

    private static readonly Lazy<(string Name, string Text)[]> Programs = new(() => Load(".cu"));
    private static readonly Lazy<(string Name, string Text)[]> Headers = new(() => Load(".cuh"));

    /// <summary>The kernel files (<c>matmul.cu</c>, ...), sorted by name.</summary>
    public static IReadOnlyList<(string Name, string Text)> Files => Programs.Value;

    /// <summary>The shared headers (<c>common.cuh</c>), sorted by name.</summary>
    public static IReadOnlyList<(string Name, string Text)> HeaderFiles => Headers.Value;

    /// <summary>The text of kernel file <paramref name="name"/>; throws if it is not embedded.</summary>
    public static string Get(string name)
    {
        foreach (var (n, text) in Programs.Value) if (n == name) return text;
        throw new ArgumentException($"kernel source {name} is not embedded in {typeof(KernelSources).Assembly.GetName().Name}");
    }

    private static (string, string)[] Load(string extension)
    {
        var asm = typeof(KernelSources).Assembly;
        var list = new List<(string, string)>();
        foreach (string res in asm.GetManifestResourceNames())
        {
            if (!res.StartsWith(Prefix, StringComparison.Ordinal) || !res.EndsWith(extension, StringComparison.Ordinal)) continue;
            using var s = asm.GetManifestResourceStream(res)!;
            using var r = new StreamReader(s, Encoding.UTF8);
            list.Add((res[Prefix.Length..], r.ReadToEnd()));
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return list.ToArray();
    }
}
