"""A PyTorch (CPU) transcription of efficient-kan's KANLinear (and, at the end, of fast-kan's FastKANLayer and
ChebyKAN's ChebyKANLayer), for tools/make_golden.py.

efficient-kan is not on the package index this project installs from (`pip download efficient-kan` finds
no distribution), so the golden cases of `kan_linear` come from this transcription of its source, NOT from
the original package. Transcribed from github.com/Blealtan/efficient-kan, src/efficient_kan/kan.py at
commit 082a4da7a27a668a69506fb5c191937b60a5297e (REFERENCE below): KANLinear.__init__ (grid buffer and
parameter shapes), b_splines, curve2coeff, scaled_spline_weight, forward and update_grid.

Substitutions (the only departures from the source, each computing the same function):
  - einops' rearrange / repeat / reduce -> the equivalent permute / unsqueeze / abs().mean() (einops is not
    installed here);
  - reset_parameters is not transcribed: make_golden.py sets every parameter from its own generator;
  - update_grid stores the new grid with `grid.T` (upstream's later form): at this commit it is
    `rearrange(grid, 'g 1 -> 1 g')`, which only accepts in_features = 1.
"""

import torch
import torch.nn.functional as F

REFERENCE = "github.com/Blealtan/efficient-kan@082a4da7a27a668a69506fb5c191937b60a5297e src/efficient_kan/kan.py"


class KANLinear(torch.nn.Module):
    def __init__(self, in_features, out_features, grid_size=5, spline_order=3, enable_standalone_scale_spline=True,
                 base_activation=torch.nn.SiLU, grid_eps=0.02, grid_range=(-1, 1)):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order

        h = (grid_range[1] - grid_range[0]) / grid_size
        grid = ((torch.arange(-spline_order, grid_size + spline_order + 1) * h + grid_range[0])
                .expand(in_features, -1).contiguous())
        self.register_buffer("grid", grid)

        self.base_weight = torch.nn.Parameter(torch.zeros(out_features, in_features))
        self.spline_weight = torch.nn.Parameter(torch.zeros(out_features, in_features, grid_size + spline_order))
        if enable_standalone_scale_spline:
            self.spline_scaler = torch.nn.Parameter(torch.zeros(out_features, in_features))
        self.enable_standalone_scale_spline = enable_standalone_scale_spline
        self.base_activation = base_activation()
        self.grid_eps = grid_eps

    def b_splines(self, x):
        assert x.dim() == 2 and x.size(1) == self.in_features
        grid = self.grid  # (in_features, grid_size + 2 * spline_order + 1)
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            bases = ((x - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)]) * bases[:, :, :-1]) + (
                (grid[:, k + 1:] - x) / (grid[:, k + 1:] - grid[:, 1:(-k)]) * bases[:, :, 1:])
        assert bases.size() == (x.size(0), self.in_features, self.grid_size + self.spline_order)
        return bases.contiguous()

    def curve2coeff(self, x, y):
        assert x.dim() == 2 and x.size(1) == self.in_features
        assert y.size() == (x.size(0), self.in_features, self.out_features)
        A = self.b_splines(x).transpose(0, 1)  # (in_features, batch_size, grid_size + spline_order)
        B = y.transpose(0, 1)  # (in_features, batch_size, out_features)
        solution = torch.linalg.lstsq(A, B).solution  # (in_features, grid_size + spline_order, out_features)
        result = solution.permute(2, 0, 1)  # (out_features, in_features, grid_size + spline_order)
        return result.contiguous()

    @property
    def scaled_spline_weight(self):
        return self.spline_weight * (self.spline_scaler.unsqueeze(-1) if self.enable_standalone_scale_spline else 1.0)

    def forward(self, x):
        assert x.size(-1) == self.in_features
        original_shape = x.shape
        x = x.reshape(-1, self.in_features)
        base_output = F.linear(self.base_activation(x), self.base_weight)
        spline_output = F.linear(self.b_splines(x).view(x.size(0), -1),
                                 self.scaled_spline_weight.view(self.out_features, -1))
        output = base_output + spline_output
        return output.reshape(*original_shape[:-1], self.out_features)

    @torch.no_grad()
    def update_grid(self, x, margin=0.01):
        assert x.dim() == 2 and x.size(1) == self.in_features
        batch = x.size(0)
        splines = self.b_splines(x).permute(1, 0, 2)  # (in, batch, coeff)
        orig_coeff = self.scaled_spline_weight.permute(1, 2, 0)  # (in, coeff, out)
        unreduced_spline_output = torch.bmm(splines, orig_coeff).permute(1, 0, 2)  # (batch, in, out)

        x_sorted = torch.sort(x, dim=0)[0]
        grid_adaptive = x_sorted[torch.linspace(0, batch - 1, self.grid_size + 1, dtype=torch.int64)]
        uniform_step = (x_sorted[-1] - x_sorted[0] + 2 * margin) / self.grid_size
        grid_uniform = (torch.arange(self.grid_size + 1, dtype=torch.float32).unsqueeze(1) * uniform_step
                        + x_sorted[0] - margin)
        grid = self.grid_eps * grid_uniform + (1 - self.grid_eps) * grid_adaptive
        grid = torch.cat([
            grid[:1] - uniform_step * torch.arange(self.spline_order, 0, -1).unsqueeze(1),
            grid,
            grid[-1:] + uniform_step * torch.arange(1, self.spline_order + 1).unsqueeze(1),
        ], dim=0)
        self.grid.copy_(grid.T)
        self.spline_weight.data.copy_(self.curve2coeff(x, unreduced_spline_output))


# ------------------------------------------------------------------------------------------------
# The fast variants, transcribed the same way (not installable here either):
#   FastKANLayer: github.com/ZiyaoLi/fast-kan@01b59f7242b31fa05f5493900b8b567c96d6e2c1 fastkan/fastkan.py
#                 (RadialBasisFunction, SplineLinear, FastKANLayer; no substitution)
#   ChebyKANLayer: github.com/SynodicMonth/ChebyKAN@0e4063fc915386563eca4de4fcf7e120dc564df8 ChebyKANLayer.py
#                 (no substitution; the init is replaced by make_golden.py's generator)
# ------------------------------------------------------------------------------------------------

FASTKAN_REFERENCE = "github.com/ZiyaoLi/fast-kan@01b59f7242b31fa05f5493900b8b567c96d6e2c1 fastkan/fastkan.py"
CHEBYKAN_REFERENCE = "github.com/SynodicMonth/ChebyKAN@0e4063fc915386563eca4de4fcf7e120dc564df8 ChebyKANLayer.py"


class SplineLinear(torch.nn.Linear):
    def __init__(self, in_features, out_features, init_scale=0.1, **kw):
        self.init_scale = init_scale
        super().__init__(in_features, out_features, bias=False, **kw)

    def reset_parameters(self):
        torch.nn.init.trunc_normal_(self.weight, mean=0, std=self.init_scale)


class RadialBasisFunction(torch.nn.Module):
    def __init__(self, grid_min=-2., grid_max=2., num_grids=8, denominator=None):
        super().__init__()
        grid = torch.linspace(grid_min, grid_max, num_grids)
        self.grid = torch.nn.Parameter(grid, requires_grad=False)
        self.denominator = denominator or (grid_max - grid_min) / (num_grids - 1)

    def forward(self, x):
        return torch.exp(-((x[..., None] - self.grid) / self.denominator) ** 2)


class FastKANLayer(torch.nn.Module):
    def __init__(self, input_dim, output_dim, grid_min=-2., grid_max=2., num_grids=8, use_base_update=True,
                 base_activation=torch.nn.SiLU, spline_weight_init_scale=0.1):
        super().__init__()
        self.layernorm = torch.nn.LayerNorm(input_dim)
        self.rbf = RadialBasisFunction(grid_min, grid_max, num_grids)
        self.spline_linear = SplineLinear(input_dim * num_grids, output_dim, spline_weight_init_scale)
        self.use_base_update = use_base_update
        if use_base_update:
            self.base_activation = base_activation()
            self.base_linear = torch.nn.Linear(input_dim, output_dim)

    def forward(self, x):
        spline_basis = self.rbf(self.layernorm(x))
        ret = self.spline_linear(spline_basis.view(*spline_basis.shape[:-2], -1))
        if self.use_base_update:
            base = self.base_linear(self.base_activation(x))
            ret = ret + base
        return ret


class ChebyKANLayer(torch.nn.Module):
    def __init__(self, input_dim, output_dim, degree):
        super().__init__()
        self.inputdim = input_dim
        self.outdim = output_dim
        self.degree = degree
        self.cheby_coeffs = torch.nn.Parameter(torch.empty(input_dim, output_dim, degree + 1))
        torch.nn.init.normal_(self.cheby_coeffs, mean=0.0, std=1 / (input_dim * (degree + 1)))

    def forward(self, x):
        x = torch.reshape(x, (-1, self.inputdim))
        x = torch.tanh(x)
        cheby = torch.ones(x.shape[0], self.inputdim, self.degree + 1, device=x.device)
        if self.degree > 0:
            cheby[:, :, 1] = x
        for i in range(2, self.degree + 1):
            cheby[:, :, i] = torch.cos(i * torch.acos(x))
        y = torch.einsum('bid,iod->bo', cheby, self.cheby_coeffs)
        y = y.view(-1, self.outdim)
        return y
