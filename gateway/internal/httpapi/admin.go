package httpapi

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// productWrite is a parsed product write.
type productWrite struct {
	SKU      string
	Image    []byte
	Metadata searchv1.Payload
	HasMeta  bool
	Model    string
}

// parseProduct reads multipart fields sku, image and metadata (a JSON
// object). pathSKU, when set, is the SKU from the URL.
func (a *api) parseProduct(c echo.Context, pathSKU string) (productWrite, error) {
	var w productWrite
	r := c.Request()
	w.Model = strings.TrimSpace(r.URL.Query().Get("model"))
	if w.Model != "" && !searchv1.ValidName(w.Model) {
		return w, invalid("model %q is not a valid model id", w.Model)
	}
	switch mediaType(r) {
	case "multipart/form-data":
		form, err := multipartForm(r, a.Limits.MaxUpload, nil)
		if err != nil {
			return w, err
		}
		w.SKU = strings.TrimSpace(firstValue(form.Value["sku"]))
		w.Image = form.file("image")
		if len(form.File["image"]) == 0 && firstValue(form.Value["image"]) != "" {
			return w, apierror.BadRequest(CodeMissingImage, "the image must be sent as a file part, not a text field")
		}
		if vals, ok := form.Value["metadata"]; ok {
			w.HasMeta = true
			if w.Metadata, err = parseMetadata(firstValue(vals)); err != nil {
				return w, err
			}
		} else if b := form.file("metadata"); b != nil {
			w.HasMeta = true
			if w.Metadata, err = parseMetadata(string(b)); err != nil {
				return w, err
			}
		}
	case "application/json":
		if pathSKU == "" {
			return w, apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "creating a product needs multipart/form-data with sku, image and metadata")
		}
		b, err := readBody(r, 1<<20)
		if err != nil {
			return w, err
		}
		var body struct {
			Metadata any `json:"metadata"`
		}
		if err := decodeStrict(b, &body); err != nil {
			return w, apierror.Wrap(err, http.StatusBadRequest, CodeInvalidJSON, "the JSON body does not parse")
		}
		m, ok := body.Metadata.(map[string]any)
		if !ok {
			return w, apierror.BadRequest(CodeInvalidMetadata, "metadata must be a JSON object")
		}
		w.Metadata, w.HasMeta = searchv1.Payload(m), true
	default:
		return w, apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "send multipart/form-data with sku, image and metadata")
	}
	if pathSKU != "" {
		if w.SKU != "" && w.SKU != pathSKU {
			return w, apierror.BadRequest(CodeInvalidSKU, "the sku field %q differs from the URL's %q", w.SKU, pathSKU)
		}
		w.SKU = pathSKU
	}
	if err := checkSKU(w.SKU); err != nil {
		return w, err
	}
	if w.Metadata == nil {
		w.Metadata = searchv1.Payload{}
	}
	if err := checkWellKnown(w.Metadata); err != nil {
		return w, err
	}
	w.Metadata["sku"] = w.SKU
	return w, nil
}

// checkWellKnown checks the types of the payload keys search indexes.
func checkWellKnown(p searchv1.Payload) error {
	for _, k := range []string{"title", "category", "brand", "image", "image_url"} {
		if v, ok := p[k]; ok && v != nil {
			if _, ok := v.(string); !ok {
				return apierror.BadRequest(CodeInvalidMetadata, "metadata field %q must be a string", k)
			}
		}
	}
	if v, ok := p["price"]; ok && v != nil {
		if _, ok := v.(float64); !ok {
			return apierror.BadRequest(CodeInvalidMetadata, "metadata field \"price\" must be a number")
		}
	}
	if v, ok := p["in_stock"]; ok && v != nil {
		if _, ok := v.(bool); !ok {
			return apierror.BadRequest(CodeInvalidMetadata, "metadata field \"in_stock\" must be true or false")
		}
	}
	return nil
}

func firstValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func (a *api) createProduct(c echo.Context) error {
	w, err := a.parseProduct(c, "")
	if err != nil {
		return err
	}
	if len(w.Image) == 0 {
		return apierror.BadRequest(CodeMissingImage, "a product needs an image (multipart file field \"image\")")
	}
	res, err := a.Pipeline.IndexProduct(c.Request().Context(), w.SKU, w.Image, w.Metadata, w.Model)
	if err != nil {
		return err
	}
	a.Log.InfoContext(c.Request().Context(), "product indexed", "sku", w.SKU, "model", res.Model)
	return c.JSON(http.StatusCreated, res)
}

func (a *api) updateProduct(c echo.Context) error {
	sku := c.Param("sku")
	if err := checkSKU(sku); err != nil {
		return err
	}
	w, err := a.parseProduct(c, sku)
	if err != nil {
		return err
	}
	var res pipeline.Written
	switch {
	case len(w.Image) > 0:
		if !w.HasMeta {
			// A new image alone keeps the stored metadata.
			pt, gerr := a.Pipeline.Get(c.Request().Context(), w.SKU, w.Model)
			if gerr != nil {
				return gerr
			}
			for k, v := range pt.Payload {
				w.Metadata[k] = v
			}
		}
		res, err = a.Pipeline.IndexProduct(c.Request().Context(), w.SKU, w.Image, w.Metadata, w.Model)
	case w.HasMeta:
		res, err = a.Pipeline.UpdateMetadata(c.Request().Context(), w.SKU, w.Metadata, w.Model)
	default:
		return apierror.BadRequest(CodeMissingImage, "send an image, metadata or both")
	}
	if err != nil {
		return err
	}
	a.Log.InfoContext(c.Request().Context(), "product updated", "sku", w.SKU, "model", res.Model, "image", len(w.Image) > 0)
	return c.JSON(http.StatusOK, res)
}

func (a *api) deleteProduct(c echo.Context) error {
	sku := c.Param("sku")
	if err := checkSKU(sku); err != nil {
		return err
	}
	if err := a.Pipeline.Delete(c.Request().Context(), sku, c.QueryParam("model")); err != nil {
		return err
	}
	a.Log.InfoContext(c.Request().Context(), "product deleted", "sku", sku)
	return c.NoContent(http.StatusNoContent)
}

func (a *api) getProduct(c echo.Context) error {
	sku := c.Param("sku")
	if err := checkSKU(sku); err != nil {
		return err
	}
	pt, err := a.Pipeline.Get(c.Request().Context(), sku, c.QueryParam("model"))
	if err != nil {
		return err
	}
	md := map[string]any(pt.Payload)
	if md == nil {
		md = map[string]any{}
	}
	return c.JSON(http.StatusOK, gatewayv1.Product{SKU: firstNonEmpty(pt.SKU, sku), Metadata: md, Dim: len(pt.Vector)})
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
