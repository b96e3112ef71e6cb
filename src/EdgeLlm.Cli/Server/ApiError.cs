namespace EdgeLlm.Cli.Server;

/// <summary>A request the server refuses: the HTTP status and the OpenAI error fields.</summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;
}
