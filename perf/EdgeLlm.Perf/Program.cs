using BenchmarkDotNet.Running;

namespace EdgeLlm.Perf;

/// <summary>Entry point: BenchmarkDotNet's switcher, so --filter, --job etc. work as documented in perf/README.md.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
