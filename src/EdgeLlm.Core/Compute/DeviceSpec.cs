using System.Globalization;

namespace EdgeLlm.Compute;

public enum DeviceKind { Auto, Cpu, Cuda }

/// <summary>A <c>--device</c> value: <c>auto</c>, <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</summary>
public readonly record struct DeviceSpec(DeviceKind Kind, int Ordinal = 0)
{
    public static DeviceSpec Auto => new(DeviceKind.Auto);
    public static DeviceSpec Cpu => new(DeviceKind.Cpu);

    public static bool TryParse(string? text, out DeviceSpec spec)
    {
        spec = Auto;
        string s = (text ?? "").Trim().ToLowerInvariant();
        switch (s)
        {
            case "auto": spec = Auto; return true;
            case "cpu": spec = Cpu; return true;
            case "cuda" or "gpu": spec = new DeviceSpec(DeviceKind.Cuda, 0); return true;
        }
        if (s.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(s.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
        {
            spec = new DeviceSpec(DeviceKind.Cuda, n);
            return true;
        }
        return false;
    }

    /// <summary>Parses a device name; throws <see cref="ArgumentException"/> naming the accepted forms.</summary>
    public static DeviceSpec Parse(string? text) =>
        TryParse(text, out var spec) ? spec : throw new ArgumentException($"device '{text}' is not one of auto, cpu, cuda, cuda:N");

    public override string ToString() => Kind switch
    {
        DeviceKind.Auto => "auto",
        DeviceKind.Cpu => "cpu",
        _ => string.Create(CultureInfo.InvariantCulture, $"cuda:{Ordinal}"),
    };
}
