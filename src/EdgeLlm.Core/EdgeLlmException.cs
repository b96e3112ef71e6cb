namespace EdgeLlm;

/// <summary>
/// An error the user can act on (bad model file contents, a context overflow, an unsupported tensor type):
/// the message is one line that names what and where. Distinct from bugs, which surface as other exceptions.
/// </summary>
public class EdgeLlmException(string message) : Exception(message);
